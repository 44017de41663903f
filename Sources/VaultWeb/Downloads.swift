import Foundation
import Hummingbird
import NIOCore
import Synchronization
import VaultCore
import VaultFiles

/// One byte range of a download, from an HTTP `Range` header.
struct ByteRange: Equatable {
    var start: Int64
    /// One past the last byte.
    var end: Int64

    /// The range `header` asks for in a body of `size` bytes: nil for the whole body (no
    /// header, one this does not read, or several ranges, which RFC 9110 lets a server
    /// answer whole); `unsatisfiable` when it starts past the end.
    static func parse(_ header: String?, size: Int64) throws -> ByteRange? {
        guard let header, header.hasPrefix("bytes="), !header.contains(",") else { return nil }
        let spec = header.dropFirst(6).trimmingCharacters(in: .whitespaces)
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count <= 19, parts[1].count <= 19,
            parts[0].allSatisfy(\.isASCIIDigit), parts[1].allSatisfy(\.isASCIIDigit)
        else { return nil }
        let first = Int64(parts[0])
        let last = Int64(parts[1])
        switch (first, last) {
        case (let first?, let last):
            if let last, last < first { return nil }
            guard first < size else { throw RangeError.unsatisfiable }
            // Clamped before adding: a last byte of Int64.max must not overflow.
            return ByteRange(start: first, end: min(last ?? size - 1, size - 1) + 1)
        case (nil, let suffix?):
            guard suffix > 0, size > 0 else { throw RangeError.unsatisfiable }
            return ByteRange(start: max(0, size - suffix), end: size)
        case (nil, nil): return nil
        }
    }

    enum RangeError: Error { case unsatisfiable }
}

extension Console {
    /// A point's disk, streamed as rebuilt from its chain, whole or one range of it. The
    /// point is leased while it is read, as an export leases it.
    func imageDownload(point reference: String, disk: String, range: String?) async throws -> Response {
        let (reader, lease, name) = try await blocking {
            let point = try self.readablePoint(reference).point
            let source = try self.repository.exportSource(point: point.id, disk: disk)
            let (image, lease) = try self.repository.openImage(point: source.point.id, disk: source.disk)
            let reader = ImageReader(image: image, cache: self.cache)
            return (reader, Leased(lease), "\(source.point.serverName)-\(source.point.name)-\(source.disk).img")
        }
        let size = reader.size
        return try rangedResponse(size: size, range: range, type: "application/octet-stream", filename: name) {
            offset, count in
            _ = lease
            return try await self.blocking {
                var bytes = [UInt8](repeating: 0, count: count)
                let got = try bytes.withUnsafeMutableBytes { try reader.read(at: offset, into: $0) }
                guard got == count else {
                    throw VaultError(.corrupt, "the image of \(name) ends at \(offset + Int64(got)), before \(size)")
                }
                return bytes
            }
        }
    }

    /// A file inside a point, whole or one range; a folder as a tar stream.
    func fileDownload(point reference: String, volume name: String, path: String, range: String?) async throws
        -> Response
    {
        let (volume, inode, attributes) = try await blocking {
            let (_, volume) = try self.volume(point: reference, name: name)
            let inode = try volume.resolve(path)
            return (volume, inode, try volume.reader.attributes(inode))
        }
        let base = path.split(separator: "/").last.map(String.init) ?? name
        switch attributes.kind {
        case .file:
            let file = try await blocking { try volume.reader.open(inode) }
            return try rangedResponse(
                size: attributes.size, range: range, type: "application/octet-stream", filename: base
            ) { offset, count in
                try await self.blocking {
                    var bytes = [UInt8](repeating: 0, count: count)
                    var done = 0
                    while done < count {
                        let got = try bytes.withUnsafeMutableBytes {
                            try file.read(
                                at: offset + Int64(done), into: UnsafeMutableRawBufferPointer(rebasing: $0[done...]))
                        }
                        guard got > 0 else {
                            throw VaultError(.corrupt, "\(path) ends at \(offset + Int64(done)), before its size")
                        }
                        done += got
                    }
                    return bytes
                }
            }
        case .directory:
            let top = FileName(base)
            let body = ResponseBody { writer in
                let stream = ThreadStream()
                Thread.detachNewThread {
                    do {
                        // Gathered into pieces of 256 KiB: a tar header alone is 512 bytes.
                        var pending: [UInt8] = []
                        let tar = TarWriter { bytes in
                            pending += bytes
                            if pending.count >= 256 << 10 {
                                try stream.send(pending)
                                pending.removeAll(keepingCapacity: true)
                            }
                        }
                        let failures = try FileRestore.archive(volume, folder: inode, as: top, to: tar)
                        if !pending.isEmpty { try stream.send(pending) }
                        // The status is sent already: a tar that misses a file ends without
                        // its last chunk, so the client sees a failed download, never a whole one.
                        stream.finish(
                            failures.isEmpty
                                ? nil
                                : VaultError(
                                    .corrupt,
                                    "\(failures.count) file(s) could not be read: \(failures.prefix(3).joined(separator: "; "))"
                                ))
                    } catch {
                        stream.finish(error)
                    }
                }
                defer { stream.cancel() }
                while let piece = try await stream.next() {
                    try self.checkRunning()
                    try await writer.write(ByteBuffer(bytes: piece))
                }
                try await writer.finish(nil)
            }
            return Response(
                status: .ok,
                headers: [
                    .contentType: "application/x-tar",
                    .contentDisposition: Self.attachment(base + ".tar"),
                ], body: body)
        default:
            throw WebError(
                .conflict, "\(path) is a \(attributes.kind.rawValue); only files and folders can be downloaded")
        }
    }

    /// A body of `size` bytes read a piece at a time by `read(offset, count)`: whole with 200,
    /// or the range asked for with 206 and `Content-Range`.
    func rangedResponse(
        size: Int64, range header: String?, type: String, filename: String,
        read: @escaping @Sendable (Int64, Int) async throws -> [UInt8]
    ) throws -> Response {
        let range: ByteRange?
        do {
            range = try ByteRange.parse(header, size: size)
        } catch {
            return Response(
                status: .rangeNotSatisfiable,
                headers: [.contentRange: "bytes */\(size)", .contentType: "application/json"],
                body: .init(
                    byteBuffer: ByteBuffer(
                        bytes: JSON.encode(
                            ErrorBody(
                                error: .init(
                                    code: "rangeNotSatisfiable",
                                    message: "the range asked for starts past the end (\(size) bytes)"))))))
        }
        let span = range ?? ByteRange(start: 0, end: size)
        var headers: HTTPFields = [
            .contentType: type, .acceptRanges: "bytes", .contentDisposition: Self.attachment(filename),
        ]
        if let range { headers[.contentRange] = "bytes \(range.start)-\(range.end - 1)/\(size)" }
        let length = span.end - span.start
        let body = ResponseBody(contentLength: Int(length)) { writer in
            var offset = span.start
            while offset < span.end {
                try self.checkRunning()
                let count = Int(min(Int64(1 << 20), span.end - offset))
                try await writer.write(ByteBuffer(bytes: try await read(offset, count)))
                offset += Int64(count)
            }
            try await writer.finish(nil)
        }
        return Response(status: range == nil ? .ok : .partialContent, headers: headers, body: body)
    }

    /// `attachment; filename=...`: the name in ASCII with anything else replaced, and in
    /// full as RFC 5987's `filename*`.
    static func attachment(_ name: String) -> String {
        let plain = String(name.map { $0.isASCII && ($0.isLetter || $0.isNumber || "-._".contains($0)) ? $0 : "_" })
        return
            "attachment; filename=\"\(plain)\"; filename*=UTF-8''\(Query.encode(name).replacingOccurrences(of: "/", with: "%2F"))"
    }

    /// Server-Sent Events: the running jobs as JSON once a second, until the client goes
    /// (or an hour passes: a page reconnects by itself).
    func jobEvents() -> Response {
        let body = ResponseBody { writer in
            let deadline = Date().addingTimeInterval(3600)
            var last: [UInt8] = []
            var quiet = 0
            while Date() < deadline && !Self.stopping {
                let jobs = try await self.blocking { try self.runningJobs() }
                let line = JSON.encodeLine(jobs).dropLast()
                // A keep-alive comment every 15 s when nothing changed, so proxies keep it open.
                if Array(line) != last || quiet >= 15 {
                    let event = Array("event: jobs\ndata: ".utf8) + line + Array("\n\n".utf8)
                    try await writer.write(ByteBuffer(bytes: event))
                    last = Array(line)
                    quiet = 0
                } else {
                    quiet += 1
                }
                try await Task.sleep(nanoseconds: 1_000_000_000)
            }
            try await writer.finish(nil)
        }
        return Response(
            status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-store"], body: body)
    }
}

/// What keeps a point's chunks while its image is read, carried into the body's writer.
final class Leased: Sendable {
    let lease: ReaderLease?
    init(_ lease: ReaderLease?) { self.lease = lease }
}

/// Pieces made on a thread (a tar writer) handed to an async reader, at most a few at a
/// time: the thread waits while the client is slow, and stops when the client goes.
final class ThreadStream: Sendable {
    private struct State {
        var pieces: [[UInt8]] = []
        var finished = false
        var error: (any Error)?
        var cancelled = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())
    private let room = DispatchSemaphore(value: 8)

    /// From the thread: waits for room, then hands `piece` over. Throws once the reader went.
    func send(_ piece: [UInt8]) throws {
        room.wait()
        let waiter = try state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.cancelled { throw VaultError(.cancelled, "the client went away") }
            state.pieces.append(piece)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    func finish(_ error: (any Error)?) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.finished = true
            state.error = error
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// From the reader: the next piece, nil at the end; the thread's error, if it failed.
    func next() async throws -> [UInt8]? {
        while true {
            enum Step {
                case piece([UInt8])
                case end((any Error)?)
                case wait
            }
            let step = state.withLock { state -> Step in
                if !state.pieces.isEmpty { return .piece(state.pieces.removeFirst()) }
                if state.finished { return .end(state.error) }
                return .wait
            }
            switch step {
            case .piece(let piece):
                room.signal()
                return piece
            case .end(let error):
                if let error { throw error }
                return nil
            case .wait:
                await withCheckedContinuation { continuation in
                    let ready = state.withLock { state -> Bool in
                        if !state.pieces.isEmpty || state.finished { return true }
                        state.waiter = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            }
        }
    }

    /// The reader went: the thread's next send throws, and it ends.
    func cancel() {
        state.withLock { $0.cancelled = true }
        room.signal()
    }
}
