internal import CSupport
import Foundation
import Glibc
import Logging
import VaultCore
import VaultFS

/// `vaultfs REPOSITORY MOUNTPOINT [-f] [-o OPTIONS]`.
enum VaultfsCommand {
    static let usage = """
        usage: vaultfs REPOSITORY MOUNTPOINT [-f] [-o OPTIONS]      (REPOSITORY: a folder or s3://BUCKET/PREFIX)
               vaultfs --all-locations MOUNTPOINT [-f] [-o OPTIONS]  (every location of the locations file)
          -f            stay in the foreground (default: detach once mounted)
          --all-locations  a folder per location of /etc/vaultfs/locations.toml ($VAULT_CONFIG), each
                        showing its vaults; in fstab: vaultfs-locations MOUNTPOINT vaultfs all_locations,...
          -o OPTIONS    comma-separated: vault=NAME (show one vault at the root),
                        allow_other (let other users in), cache_size=SIZE (decoded chunk cache, default 128M),
                        image_mode=OCTAL (disk images' mode, default 0400: only the mounting user),
                        log=/FILE (log here; by default a detached daemon logs to syslog or the journal),
                        passphrase_file=FILE or key_file=FILE (an encrypted repository's key; else
                        VAULT_PASSPHRASE, VAULT_PASSPHRASE_FILE or a systemd credential named passphrase),
                        files_owner=me (files under files/ show as the mounting user's; default: their original owners),
                        fsname=NAME (the source /proc/mounts shows; default: the repository's path, as fstab names it),
                        ro (mounted read-only: files and images always are; ro also refuses mkdir/rmdir of points),
                        s3_endpoint=URL, s3_region=NAME, state_dir=/DIR (an s3:// repository's endpoint, region and
                        local state folder; default: VAULT_S3_ENDPOINT, AWS_REGION, VAULT_STATE_DIR; credentials
                        from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN or ~/.aws/credentials),
                        cache_dir=/DIR, cache_disk_size=SIZE (an s3:// repository: keep chunks read in DIR,
                        owner-only, as stored, at most SIZE bytes, default 10G)
        A mount point that is already mounted is refused.
        unmount with: fusermount3 -u MOUNTPOINT
        """

    static func main(_ arguments: [String]) -> Int32 {
        var positional: [String] = []
        var foreground = false
        var optionText: [String] = []
        var allLocations = false
        var rest = arguments.dropFirst()
        while let argument = rest.popFirst() {
            switch argument {
            case "-f": foreground = true
            case "--all-locations": allLocations = true
            case "-o":
                guard let value = rest.popFirst() else { return fail("-o needs a value") }
                optionText.append(value)
            case "-h", "--help":
                print(usage)
                return 0
            case "--version", "-V":
                print("vaultfs 0.1.0")
                return 0
            default:
                if argument.hasPrefix("-o") && argument.count > 2 {
                    optionText.append(String(argument.dropFirst(2)))
                    continue
                }
                if argument.hasPrefix("-") { return fail("unknown flag \(argument)\n\(usage)") }
                positional.append(argument)
            }
        }
        // The fstab form has a source and all_locations; the command line's needs neither.
        if allLocations {
            optionText.append("all_locations")
            if positional.count == 1 { positional.insert("vaultfs-locations", at: 0) }
        }
        let options: MountOptions
        do { options = try MountOptions(parsing: optionText.joined(separator: ",")) } catch { return fail("\(error)") }
        guard positional.count == 2 else { return fail("give a repository and a mount point\n\(usage)") }
        // With all_locations the source only names the mount (fstab, /proc/mounts): a
        // repository there would be read as if it were mounted, and it is not.
        if options.allLocations && (positional[0].contains("/") || S3Location.isURL(positional[0])) {
            return fail(
                "all_locations mounts every location of the locations file, and its source names the mount (vaultfs-locations), not a repository: \(positional[0]) is mounted without all_locations"
            )
        }

        let notifyFd = ProcessInfo.processInfo.environment["VAULTFS_NOTIFY_FD"].flatMap { Int32($0) }
        if !foreground && notifyFd == nil { return Detach.spawnAndWait(arguments) }
        if notifyFd != nil || options.logFile != nil {
            let local =
                S3Location.isURL(positional[0]) || options.allLocations ? nil : Posix.absolutePath(positional[0])
            let destination = bootstrapDaemonLogging(logFile: options.logFile, repository: local)
            if destination == "nowhere" && notifyFd != nil {
                Detach.notifyFailure(notifyFd!, "no log destination: give -o log=FILE")
                return 1
            }
        }
        do {
            // One malloc arena for every thread: a frame one thread frees is reused by the
            // next, whichever thread decodes it. After a cold read of the corpus image, peak
            // RSS was 160-184 MiB with two arenas and 154-155 MiB with one, at the same speed;
            // fio with 4 jobs gave 13.3-14.4k IOPS against 14.9-15.3k before the cache counted
            // its loads in flight (both changes together).
            _ = vfs_limit_malloc_arenas(1)
            if options.allLocations {
                try serveLocations(at: positional[1], fsname: positional[0], options: options, notifyFd: notifyFd)
                return 0
            }
            let location = try RepositoryLocation.parse(
                positional[0], endpoint: options.s3Endpoint, region: options.s3Region,
                stateDirectory: options.stateDirectory)
            let repository = try Repository(location: location, unlock: options.unlock, diskCache: options.diskCache)
            // A mirror location's points say in their point.json what they are copies of.
            let copyOf = (try? Locations.load())?.named(at: location)?.mirrorOf
            try Mount.serve(repository: repository, at: positional[1], options: options, copyOf: copyOf) {
                if let fd = notifyFd { Detach.notifyReady(fd) }
            }
            return 0
        } catch {
            if let fd = notifyFd { Detach.notifyFailure(fd, "\(error)") }
            return fail("\(error)")
        }
    }

    /// Mounts every location of the locations file. One that cannot be opened is left out and
    /// said in the log; none at all fails the mount.
    static func serveLocations(at mountpoint: String, fsname: String, options: MountOptions, notifyFd: Int32?) throws {
        guard let locations = try Locations.load(), !locations.entries.isEmpty else {
            throw VaultError(
                .notFound,
                "--all-locations needs named locations, and \(Locations.path()) has none (add them with 'vaultctl location add')"
            )
        }
        var served: [(name: String, repository: Repository, copyOf: String?)] = []
        let logger = Logger(label: "vaultfs")
        for location in locations.entries {
            do {
                let place = try location.repositoryLocation()
                let repository = try Repository(location: place, unlock: location.unlock(else: options.unlock))
                served.append((location.name, repository, location.mirrorOf))
            } catch {
                logger.error("location \(location.name) is not shown: \(error)")
                FileHandle.standardError.write(Data("vaultfs: location \(location.name) is not shown: \(error)\n".utf8))
            }
        }
        guard !served.isEmpty else { throw VaultError(.io, "no location of \(locations.path) could be opened") }
        var named = options
        named.fsname = options.fsname ?? fsname
        try Mount.serveLocations(served, at: mountpoint, options: named) {
            if let fd = notifyFd { Detach.notifyReady(fd) }
        }
    }

    static func fail(_ message: String) -> Int32 {
        FileHandle.standardError.write(Data("vaultfs: \(message)\n".utf8))
        return 1
    }
}
