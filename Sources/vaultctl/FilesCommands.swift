import ArgumentParser
import Foundation
import VaultCore
import VaultFiles

struct FilesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "files",
        abstract:
            "List and copy out files inside a point's disks (ext2/3/4, on the whole disk or in MBR/GPT partitions).",
        subcommands: [FilesList.self, FilesGet.self])
}

/// Which filesystem of which point: `POINT [--disk D] [--partition N]`.
struct VolumeOptions: ParsableArguments {
    @Argument(help: "Point id, id prefix, or SERVER/NAME.") var point: String
    @Option(help: "The disk, when the point has several with filesystems.") var disk: String?
    @Option(help: "The partition's number on that disk (MBR: 1-4, logical from 5; GPT: entry number).") var partition:
        Int?

    func open(_ repository: Repository) throws -> Volume {
        let (record, disks) = try repository.readablePoint(point)
        let files = PointFiles.reading(repository, cache: ChunkCache(store: repository.chunks, budget: 64 << 20))
        return try files.select(point: record.id, disks: disks, disk: disk, partition: partition)
    }
}

struct FilesList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls", abstract: "List a folder (or show one file) inside a point, with original owners and modes.")
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @OptionGroup var volume: VolumeOptions
    @Argument(help: "Path inside the filesystem (default /).") var path = "/"
    @Flag var json = false

    func run() throws {
        let volume = try volume.open(try repository.open(.point(volume.point)))
        let inode = try volume.resolve(path)
        let attributes = try volume.reader.attributes(inode)
        var rows: [(name: FileName, attributes: FileAttributes, target: FileName?)] = []
        var unusable: [FileView] = []
        func target(_ a: FileAttributes) throws -> FileName? {
            a.kind == .symlink ? try volume.reader.linkTarget(a.inode) : nil
        }
        if attributes.kind == .directory {
            let listing = try volume.listing(inode)
            for entry in listing.entries {
                let a = try volume.reader.attributes(entry.inode)
                rows.append((entry.name, a, try target(a)))
            }
            for entry in listing.unusable {
                guard let a = try? volume.reader.attributes(entry.inode) else { continue }
                unusable.append(FileView(name: entry.name, a, target: nil, unusable: true))
            }
            if !listing.unusable.isEmpty {
                FileHandle.standardError.write(
                    Data("warning: \(path): \(listing.unusable.count) \(FileRestore.unusableEntries) not shown\n".utf8))
            }
        } else {
            rows.append(
                (FileName(path.split(separator: "/").last.map(String.init) ?? path), attributes, try target(attributes))
            )
        }
        if json { return printJSON(rows.map { FileView(name: $0.name, $0.attributes, target: $0.target) } + unusable) }
        // On a terminal a name is quoted as `ls` quotes it, so a guest's name cannot forge a
        // line or move the cursor; into a pipe or file it goes as its bytes.
        let terminal = isatty(STDOUT_FILENO) == 1
        func shown(_ name: FileName) -> [UInt8] { terminal ? Array(name.quoted.utf8) : name.bytes }
        printTable(
            ["MODE", "LINKS", "UID", "GID", "SIZE", "MODIFIED", "NAME"],
            rows.map { row in
                let a = row.attributes
                let name = shown(row.name) + (row.target.map { Array(" -> ".utf8) + shown($0) } ?? [])
                return (
                    [
                        "\(a.modeText)", "\(a.links)", "\(a.uid)", "\(a.gid)", Units.formatSize(Int64(a.size)),
                        shownTime(Date(timeIntervalSince1970: Double(a.modified.seconds))),
                    ], name
                )
            })
    }
}

struct FilesGet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get",
        abstract:
            "Copy one file out of a point, or a folder as a tar stream with owners, modes, times, links and xattrs.",
        discussion: """
            A file is written with its mode and modification time (owners need tar and root). A folder becomes a \
            POSIX tar archive: unpack it with `tar -xpf FILE --xattrs --xattrs-include='*' --numeric-owner` \
            (as root to restore owners). A file or folder that cannot be read is named on stderr, the rest is \
            still written, and the command exits 1.
            """)
    @OptionGroup(title: "Repository options") var repository: RepositoryOptions
    @OptionGroup var volume: VolumeOptions
    @Argument(help: "Path inside the filesystem.") var path: String
    @Option(
        name: .shortAndLong, help: "Output file (written beside and renamed when complete), or - for standard output.")
    var output: String
    @OptionGroup(title: "Output options") var progress: ProgressOptions

    func run() throws {
        let volume = try volume.open(try repository.open(.point(volume.point)))
        let printer = progress.printer()
        let meter = ProgressMeter(label: path, report: printer.callback())
        defer { printer.clear() }
        let inode = try volume.resolve(path)
        let attributes = try volume.reader.attributes(inode)
        let target = try ExportTarget.open(output)
        let fd = target.fd
        let name = target.name
        switch attributes.kind {
        case .file:
            meter.addTotal(attributes.size)
            try FileRestore.copy(volume, file: inode, size: attributes.size, skipHoles: target.isFile) {
                offset, bytes in
                meter.advance(Int64(bytes.count))
                if target.isFile {
                    try Posix.pwriteAll(fd, bytes, offset, path: name)
                } else {
                    try Posix.writeAll(fd, bytes, path: name)
                }
            }
            if target.isFile {
                guard ftruncate(fd, off_t(attributes.size)) == 0,
                    fchmod(fd, mode_t(attributes.permissions & 0o777)) == 0
                else {
                    throw VaultError(.io, "cannot finish \(name): \(Posix.message(errno))")
                }
                let times = [
                    timespec(tv_sec: Int(attributes.accessed.seconds), tv_nsec: Int(attributes.accessed.nanoseconds)),
                    timespec(tv_sec: Int(attributes.modified.seconds), tv_nsec: Int(attributes.modified.nanoseconds)),
                ]
                _ = futimens(fd, times)
            }
            meter.finish()
            printer.clear()
            try target.commit()
            FileHandle.standardError.write(
                Data("copied \(path) (\(Units.formatSize(attributes.size))) to \(name)\n".utf8))
        case .directory:
            let tar = TarWriter { try Posix.writeAll(fd, $0, path: name) }
            let top = FileName(path.split(separator: "/").last.map(String.init) ?? volume.name)
            let failures = try FileRestore.archive(volume, folder: inode, as: top, to: tar, meter: meter)
            meter.finish()
            printer.clear()
            try target.commit()
            for failure in failures { FileHandle.standardError.write(Data("cannot read: \(failure)\n".utf8)) }
            FileHandle.standardError.write(
                Data(
                    "wrote \(path) as tar to \(name)\(failures.isEmpty ? "" : " (\(failures.count) unreadable)")\n".utf8
                ))
            if !failures.isEmpty { throw ExitCode.failure }
        default:
            throw VaultError(
                .invalidArgument, "\(path) is a \(attributes.kind.rawValue); only files and folders can be copied out")
        }
    }
}
