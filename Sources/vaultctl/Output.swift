import Foundation
import VaultCore

/// Prints rows as aligned columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    printTable(header, rows.map { (Array($0.dropLast()), Array(($0.last ?? "").utf8)) })
}

/// A table whose last column is bytes as they are (a file name need not be UTF-8).
func printTable(_ header: [String], _ rows: [(cells: [String], last: [UInt8])]) {
    var widths = header.dropLast().map(\.count)
    for row in rows {
        for (i, cell) in row.cells.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
    }
    var out: [UInt8] = []
    func line(_ cells: [String], _ last: [UInt8]) {
        for (i, cell) in cells.enumerated() {
            out += Array(
                cell.padding(toLength: i < widths.count ? widths[i] : cell.count, withPad: " ", startingAt: 0).utf8)
            out += Array("  ".utf8)
        }
        out += last + [0x0A]
    }
    line(Array(header.dropLast()), Array((header.last ?? "").utf8))
    for row in rows { line(row.cells, row.last) }
    // What `print` buffered goes first, so the two never reorder; a closed pipe (`| head`)
    // ends the listing quietly, as it ends `ls`.
    fflush(nil)
    _ = try? out.withUnsafeBytes { try Posix.writeAll(STDOUT_FILENO, $0, path: "standard output") }
}

func printJSON<T: Encodable>(_ value: T) {
    FileHandle.standardOutput.write(Data(JSON.encode(value)))
}

func describe(_ point: Point, disks: [PointDisk]) -> String {
    let size = disks.reduce(Int64(0)) { $0 + $1.changedBytes }
    let written = disks.reduce(Int64(0)) { $0 + $1.newBytes }
    switch point.status {
    case .active:
        return
            "\(point.serverName)/\(point.name): \(point.kind.rawValue) point \(point.id) (\(Units.formatSize(size)) changed, \(Units.formatSize(written)) newly stored)"
    case .failed:
        return "\(point.serverName)/\(point.name): failed: \(point.error ?? "unknown error")"
    case .creating:
        return "\(point.serverName)/\(point.name): still running"
    }
}

/// One line on standard error: warnings and what went wrong beside a command's output.
func printError(_ line: String) {
    fflush(nil)
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// A time as tables and lines show it: local, with its offset (`2030-01-01 17:00:00 +0100`),
/// as borg and restic list; UTC with `--utc` (`2030-01-01 16:00:00 +0000`). JSON keeps UTC.
func shownTime(_ date: Date) -> String {
    // Put together by hand: a DateFormatter was made for every time of every row.
    let utc = ProcessInfo.processInfo.environment["VAULT_UTC"] == "1"
    return Units.formatShown(date, offset: utc ? 0 : TimeZone.current.secondsFromGMT(for: date))
}

/// `text` (a time as JSON gives it, in UTC) as tables show times; as it is when it is not one.
func shownTime(_ text: String) -> String {
    Units.parseTime(text).map { shownTime($0) } ?? text
}
