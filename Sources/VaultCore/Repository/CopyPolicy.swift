import Foundation

/// A vault's copy policy: its points copied to another location every `everySeconds`, where
/// its own retention keeps the newest `keepFulls` chains of each server.
public struct CopyPolicy: Sendable, Equatable, Codable {
    public var vault: String
    /// The location the copies go to.
    public var to: String
    public var everySeconds: Int
    public var keepFulls: Int

    public static let keepFullsRange = 1...1000
    /// From one minute to a year.
    public static let everyRange = 60...(366 * 86400)

    public init(vault: String, to: String, everySeconds: Int, keepFulls: Int) throws {
        self.vault = vault
        self.to = to
        self.everySeconds = everySeconds
        self.keepFulls = keepFulls
        try validate()
    }

    func validate() throws {
        try Names.validateVaultOrServer(vault, what: "vault")
        try Names.validateVaultOrServer(to, what: "location")
        guard Self.everyRange.contains(everySeconds) else {
            throw VaultError.invalid(
                "a copy's interval is from 1m to 366d, not \(Units.formatDuration(Double(everySeconds)))")
        }
        guard Self.keepFullsRange.contains(keepFulls) else {
            throw VaultError.invalid("a copy keeps from 1 to 1000 fulls, not \(keepFulls)")
        }
    }
}
