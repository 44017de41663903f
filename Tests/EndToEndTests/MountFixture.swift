import Foundation
import TestSupport
import VaultCore

/// A repository with a policy chain (one full and its incrementals) and manual points of a
/// real ext4 disk that changed between points, with a copy of the disk as it was at each.
final class MountFixture {
    let scratch = Scratch("mount")
    let ctl: Vaultctl
    let disk: Ext4Image
    /// Point name -> copy of the disk as it was when that point was taken.
    private(set) var asItWas: [String: String] = [:]
    private(set) var names: [String] = []

    init(policyPoints: Int, manual: [String] = []) throws {
        ctl = Vaultctl(repository: scratch.file("repo"))
        disk = try Ext4Image.make(
            at: scratch.file("web.img"), size: "24M",
            files: [
                "etc/hostname": Array("web\n".utf8), "data/base.bin": pseudoRandomBytes(1 << 20, seed: 1),
            ])
        try ctl.run("init", ctl.repository, "--chunk-size", "64K")
        try ctl.run("vault", "create", "prod")
        try ctl.run(
            "policy", "set", "prod", "--start", "16:00", "--every", "4h", "--incrementals", "\(max(policyPoints, 1))",
            "--keep-fulls", "2", "--now", "2030-01-01T12:00")
        try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(disk.path)")
        let start = Units.parseTime("2030-01-01T16:00")!
        for k in 0..<policyPoints {
            let slot = start.addingTimeInterval(Double(k) * 4 * 3600)
            try disk.write("data/slot-\(k).bin", pseudoRandomBytes(120_000 + 5000 * k, seed: UInt64(50 + k)))
            try remember(Units.compactUTC(slot))
            try ctl.run("schedule", "run", "--once", "--now", isoLocal(slot))
        }
        for name in manual {
            try disk.write("data/\(name).bin", pseudoRandomBytes(90_000, seed: UInt64(name.count)))
            try remember(name)
            try ctl.run("backup", "web", "--name", name)
        }
    }

    private func remember(_ name: String) throws {
        let copy = scratch.file("as-at-\(name).img")
        try disk.snapshot(to: copy)
        asItWas[name] = copy
        names.append(name)
    }

    func mount(_ options: [String] = []) throws -> MountedRepository {
        try MountedRepository(repository: ctl.repository, at: scratch.file("mnt"), options: options)
    }

    func repository() throws -> Repository { try openRepository(ctl.repository) }
}

/// Opens a repository in-process as the tests' commands do: an encrypted one with the
/// passphrase in the environment.
func openRepository(_ path: String) throws -> Repository {
    try Repository(path: path, unlock: .passphrase { try Passphrase.read() })
}
