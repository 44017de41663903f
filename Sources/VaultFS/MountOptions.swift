import VaultCore

/// What `-o` may say. Anything else is refused, so a typo never mounts something unexpected.
public struct MountOptions: Sendable, Equatable {
    public var vault: String?
    public var allowOther = false
    /// Decoded chunks are a second cache behind the kernel's page cache of the images, so a
    /// moderate budget serves concurrent readers and read-ahead.
    public var cacheSize = 128 << 20
    public var fsname: String?
    /// Mode of disk images: owner-only unless asked (`image_mode=0440` or `0444`), so
    /// `allow_other` opens the tree without opening every disk to every user.
    public var imageMode: UInt16 = 0o400
    /// Where a detached daemon logs when there is no journal or syslog (`log=FILE`).
    public var logFile: String?
    /// An encrypted repository's passphrase, in a file (`passphrase_file=`), or its key file
    /// (`key_file=`). Paths only: a secret never appears in the options or /proc/mounts.
    public var passphraseFile: String?
    public var keyFile: String?
    /// `files_owner=me`: files under `files/` show as the mounting user's, so an operator
    /// can restore any of them; by default they keep their original owners and groups.
    public var filesOwnedByMounter = false
    /// `ro`: the kernel mounts it read-only (as /proc/mounts then says), so mkdir and rmdir
    /// of points are refused too.
    public var readOnly = false
    /// An `s3://` repository's endpoint, region and state folder (`s3_endpoint=`,
    /// `s3_region=`, `state_dir=`), for fstab and units where the environment is not set.
    public var s3Endpoint: String?
    public var s3Region: String?
    public var stateDirectory: String?
    /// A folder that keeps chunks read from a bucket (`cache_dir=`), and how many bytes it
    /// may hold (`cache_disk_size=`, default 10G).
    public var cacheDirectory: String?
    public var cacheDiskSize: Int64?
    /// Most bytes a second the fill of instant restores copies in the background
    /// (`restore_fill_rate=`, e.g. 100M); unlimited by default. Guest reads and writes are
    /// never held back.
    public var restoreFillRate: Int64?
    /// `all_locations`: every location of the locations file, each a folder at the root
    /// (`vaultfs --all-locations`); the source is then only the mount's name.
    public var allLocations = false

    public init() {}

    /// The disk cache asked for, if any.
    public var diskCache: DiskCacheSettings? {
        cacheDirectory.map { DiskCacheSettings(directory: $0, bytes: cacheDiskSize ?? 10 << 30) }
    }

    /// Parses comma-separated options (several `-o` may be joined with commas first).
    public init(parsing text: String) throws {
        for option in text.split(separator: ",").map(String.init) where !option.isEmpty {
            let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
            let key = parts[0]
            let value = parts.count > 1 ? parts[1] : nil
            switch (key, value) {
            case ("vault", let name?) where !name.isEmpty: vault = name
            case ("allow_other", nil): allowOther = true
            case ("cache_size", let size?):
                guard let bytes = Units.parseSize(size), bytes >= 1 << 20 else {
                    throw VaultError(
                        .invalidArgument, "bad cache_size '\(size)': give a size of at least 1M, e.g. 512M")
                }
                // The cache lives in memory: a budget the machine cannot hold would only
                // end in the kernel's out-of-memory killer taking the mount down.
                guard bytes <= Posix.physicalMemory else {
                    throw VaultError(
                        .invalidArgument,
                        "bad cache_size '\(size)': this process may use \(Units.formatSize(Int64(Posix.physicalMemory))) of memory (the machine's, or its control group's limit); give less, e.g. 512M"
                    )
                }
                cacheSize = bytes
            case ("fsname", let name?): fsname = name
            case ("image_mode", let text?):
                guard let mode = UInt16(text, radix: 8), mode & ~0o444 == 0, mode & 0o400 != 0 else {
                    throw VaultError(
                        .invalidArgument, "bad image_mode '\(text)': give read bits in octal, e.g. 0400, 0440 or 0444")
                }
                imageMode = mode
            case ("log", let path?) where path.hasPrefix("/"): logFile = path
            case ("passphrase_file", let path?) where !path.isEmpty: passphraseFile = path
            case ("key_file", let path?) where !path.isEmpty: keyFile = path
            case ("files_owner", "me"): filesOwnedByMounter = true
            case ("files_owner", "original"): filesOwnedByMounter = false
            case ("s3_endpoint", let url?) where !url.isEmpty: s3Endpoint = url
            case ("s3_region", let region?) where !region.isEmpty: s3Region = region
            case ("state_dir", let path?) where path.hasPrefix("/"): stateDirectory = path
            case ("cache_dir", let path?) where path.hasPrefix("/"): cacheDirectory = path
            case ("cache_disk_size", let size?):
                guard let bytes = Units.parseSize(size), bytes >= 1 << 20 else {
                    throw VaultError(
                        .invalidArgument, "bad cache_disk_size '\(size)': give a size of at least 1M, e.g. 20G")
                }
                cacheDiskSize = Int64(bytes)
            case ("restore_fill_rate", let size?):
                guard let bytes = Units.parseSize(size), bytes >= 1 << 20 else {
                    throw VaultError(
                        .invalidArgument, "bad restore_fill_rate '\(size)': give bytes a second, at least 1M, e.g. 100M"
                    )
                }
                restoreFillRate = Int64(bytes)
            case ("all_locations", nil): allLocations = true
            case ("ro", nil): readOnly = true
            case ("rw", nil): readOnly = false
            case ("default_permissions", nil), ("nodev", nil), ("nosuid", nil), ("noexec", nil),
                ("noatime", nil), ("relatime", nil), ("dev", nil), ("suid", nil), ("exec", nil), ("atime", nil):
                continue
            default:
                throw VaultError(
                    .invalidArgument,
                    "unknown mount option '\(option)' (known: vault=NAME, allow_other, cache_size=SIZE, image_mode=OCTAL, log=/FILE, passphrase_file=FILE, key_file=FILE, files_owner=me|original, fsname=NAME, ro, s3_endpoint=URL, s3_region=NAME, state_dir=/DIR, cache_dir=/DIR, cache_disk_size=SIZE, restore_fill_rate=SIZE, all_locations)"
                )
            }
        }
        if allLocations
            && (cacheDirectory != nil || stateDirectory != nil || vault != nil || s3Endpoint != nil || s3Region != nil)
        {
            throw VaultError(
                .invalidArgument,
                "all_locations takes each location's settings from the locations file: vault=, state_dir=, cache_dir=, s3_endpoint= and s3_region= are for a mount of one repository"
            )
        }
        if cacheDiskSize != nil && cacheDirectory == nil {
            throw VaultError(.invalidArgument, "cache_disk_size= needs cache_dir=/DIR, the folder that holds the cache")
        }
    }
}

extension MountOptions {
    /// How to unlock the repository if it is encrypted: `key_file=`, `passphrase_file=`, or
    /// the passphrase sources every command reads (the environment, a systemd credential).
    public var unlock: Unlock {
        if let keyFile { return .keyFile(keyFile) }
        if let passphraseFile { return .passphrase { try Passphrase.fromFile(passphraseFile) } }
        return .passphrase { try Passphrase.read(descriptorOption: nil) }
    }
}
