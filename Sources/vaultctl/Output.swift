import Foundation
import VaultCore

/// Prints rows as aligned columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, cell in
            i == cells.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }
    print(line(header))
    for row in rows { print(line(row)) }
}

func printJSON<T: Encodable>(_ value: T) {
    FileHandle.standardOutput.write(Data(JSON.encode(value)))
}

func describe(_ point: Point, disks: [PointDisk]) -> String {
    let size = disks.reduce(Int64(0)) { $0 + $1.changedBytes }
    let written = disks.reduce(Int64(0)) { $0 + $1.newBytes }
    switch point.status {
    case .active:
        return "\(point.serverName)/\(point.name): \(point.kind.rawValue) point \(point.id) (\(Units.formatSize(size)) changed, \(Units.formatSize(written)) newly stored)"
    case .failed:
        return "\(point.serverName)/\(point.name): failed: \(point.error ?? "unknown error")"
    case .creating:
        return "\(point.serverName)/\(point.name): still running"
    }
}
