import Glibc
import Logging

/// Sends log records to syslog (the journal under systemd): a detached daemon has no
/// terminal to write to.
struct SyslogLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    let label: String

    static func open() { openlog("vaultfs", LOG_PID, LOG_DAEMON) }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let priority: Int32
        switch event.level {
        case .trace, .debug: priority = LOG_DEBUG
        case .info: priority = LOG_INFO
        case .notice: priority = LOG_NOTICE
        case .warning: priority = LOG_WARNING
        case .error: priority = LOG_ERR
        case .critical: priority = LOG_CRIT
        }
        let text = "\(event.message)"
        withVaList([text]) { vsyslog(priority, "%s", $0) }
    }
}

/// Appends log records to a file, one line each with time and level: for a detached daemon
/// on a machine with neither a journal nor syslog, or when `-o log=FILE` asks for it.
struct FileLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    let fd: Int32

    /// Opens `path` for appending (owner-only when created); nil when it cannot be written.
    static func open(_ path: String) -> Int32? {
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { return nil }
        // In a shared folder such as /tmp another user may have made the file first: never
        // write the log into a file someone else owns.
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_uid == getuid(), st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            return nil
        }
        return fd
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        let stamp = String(
            format: "%04d-%02d-%02dT%02d:%02d:%02dZ", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
            parts.tm_hour, parts.tm_min, parts.tm_sec)
        let text = "\(stamp) vaultfs[\(getpid())] \(event.level): \(event.message)\n"
        _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
    }
}

/// Where a detached daemon's log goes: the file `-o log=` names; else the journal or syslog
/// when the machine has one; else `vaultfs.log` in the repository, or in /tmp when the
/// repository cannot be written. Returns a line saying where, for the start-up message.
func bootstrapDaemonLogging(logFile: String?, repository: String?) -> String {
    var candidates: [String] = []
    if let logFile {
        candidates = [logFile]
    } else if access("/run/systemd/journal/socket", F_OK) == 0 || access("/dev/log", F_OK) == 0 {
        SyslogLogHandler.open()
        LoggingSystem.bootstrap { SyslogLogHandler(label: $0) }
        return "syslog"
    } else {
        candidates = (repository.map { ["\($0)/vaultfs.log"] } ?? []) + ["/tmp/vaultfs-\(getuid()).log"]
    }
    for path in candidates {
        if let fd = FileLogHandler.open(path) {
            LoggingSystem.bootstrap { _ in FileLogHandler(fd: fd) }
            return path
        }
    }
    return "nowhere"
}
