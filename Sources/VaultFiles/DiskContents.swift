import VaultCore

/// What one disk of a point holds, found once and kept: its partition table, and the
/// filesystem of the whole disk or of each partition, opened where vaultfs reads it.
public struct DiskContents: Sendable {
    public let disk: String
    public let view: DiskContentsView
    /// The shown volumes, by name (`root`, `data.part1`).
    public let volumes: [String: Volume]
    /// Where each partition lies, by number, for `<disk>.part<N>.img`.
    public let partitions: [Int: (offset: Int64, size: Int64)]
    /// The disk's bytes, which partitions are windows onto.
    public let source: any ByteSource

    /// Looks at a disk: a filesystem on the whole disk comes first, then an MBR or GPT.
    /// The volumes' directory listings are counted against `memory` when given.
    public static func probe(disk: String, source: any ByteSource, memory: ChunkCache? = nil) -> DiskContents {
        var view = DiskContentsView.VolumeView(name: disk, partition: nil, offset: 0, size: source.size)
        let whole = Filesystems.open(source)
        if case .success(let reader) = whole {
            describe(&view, reader)
            return DiskContents(
                disk: disk, view: DiskContentsView(partitionTable: nil, volumes: [view]),
                volumes: [disk: Volume(name: disk, reader: reader, memory: memory)], partitions: [:], source: source)
        }
        let table: PartitionTable?
        do {
            table = try PartitionTable.read(source)
        } catch {
            view.reason = "partition table: \(message(error))"
            return DiskContents(
                disk: disk, view: DiskContentsView(partitionTable: nil, volumes: [view]), volumes: [:], partitions: [:],
                source: source)
        }
        guard let table else {
            if case .failure(let error) = whole { view.reason = error.message }
            return DiskContents(
                disk: disk, view: DiskContentsView(partitionTable: nil, volumes: [view]), volumes: [:], partitions: [:],
                source: source)
        }
        var volumes: [DiskContentsView.VolumeView] = []
        var shown: [String: Volume] = [:]
        var partitions: [Int: (offset: Int64, size: Int64)] = [:]
        for partition in table.partitions {
            let name = "\(disk).part\(partition.number)"
            var volume = DiskContentsView.VolumeView(
                name: name, partition: partition.number, offset: partition.offset, size: partition.size)
            volume.partitionType = partition.type
            volume.partitionName = partition.name
            partitions[partition.number] = (partition.offset, partition.size)
            switch Filesystems.open(SliceSource(source, offset: partition.offset, length: partition.size)) {
            case .success(let reader):
                describe(&volume, reader)
                shown[name] = Volume(name: name, reader: reader, memory: memory)
            case .failure(let error):
                volume.reason = error.message
            }
            volumes.append(volume)
        }
        return DiskContents(
            disk: disk, view: DiskContentsView(partitionTable: table.scheme.rawValue, volumes: volumes),
            volumes: shown, partitions: partitions, source: source)
    }

    /// Names of the volumes shown under `files/`, in disk order.
    public var shownVolumes: [String] { view.volumes.filter(\.shown).map(\.name) }

    private static func describe(_ view: inout DiskContentsView.VolumeView, _ reader: any FilesystemReader) {
        view.filesystem = reader.summary.type
        view.label = reader.summary.label
        view.uuid = reader.summary.uuid
        view.notes = reader.summary.notes
        view.shown = true
    }

    private static func message(_ error: any Error) -> String { (error as? VaultError)?.message ?? "\(error)" }
}
