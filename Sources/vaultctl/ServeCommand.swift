import ArgumentParser
import Foundation
import Synchronization
import VaultCore
import VaultWeb

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the web console and its HTTP API (/api/v1) over the repository, until stopped.",
        discussion: """
            Every request needs the console's token: the API takes it as 'Authorization: Bearer TOKEN', the \
            pages through a login form that sets a session cookie. The token is made at first start in \
            $VAULT_WEB_TOKEN_FILE, else web/token in this user's state folder (/var/lib/vaultfs/web/token for \
            root), readable by its owner alone. Listening beyond this host (an address other than 127.0.0.1 or \
            ::1) needs --tls-cert and --tls-key. The API is described in docs/openapi.json.
            """)
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @Option(help: "HOST:PORT, or unix:PATH for a unix socket (made owner-only).") var listen = "127.0.0.1:8200"
    @Option(help: "The TLS certificate chain (PEM); with --tls-key.") var tlsCert: String?
    @Option(help: "The TLS private key (PEM); with --tls-cert.") var tlsKey: String?
    @Option(help: "The token file (default: $VAULT_WEB_TOKEN_FILE, else web/token in the state folder).")
    var tokenFile: String?

    func run() throws {
        let options = ConsoleOptions(
            listen: try ConsoleOptions.Listen.parse(listen), tlsCertificate: tlsCert, tlsKey: tlsKey,
            tokenFile: tokenFile.map(Posix.absolutePath) ?? TokenFile.standardPath())
        try options.check()
        let repo = try repository.open()
        let failure = Mutex<(any Error)?>(nil)
        let done = DispatchSemaphore(value: 0)
        // The server is async; this command stays a synchronous one, as every other is.
        Task.detached {
            do {
                try await Console.serve(repository: repo, options: options) { lines in
                    // Unbuffered: a script waits for these lines to learn the port.
                    FileHandle.standardOutput.write(Data(lines.map { $0 + "\n" }.joined().utf8))
                }
            } catch {
                failure.withLock { $0 = error }
            }
            done.signal()
        }
        done.wait()
        if let error = failure.withLock({ $0 }) { throw error }
    }
}
