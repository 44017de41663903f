import Foundation
import Glibc
import TestSupport
import XCTest

/// Named locations: two real repositories in folders, named in a locations file; commands
/// find the location of what they name, new vaults go to the default or the one named, the
/// scheduler serves every location, and each configuration error is one line that changes
/// nothing.
final class LocationTests: XCTestCase {
    private final class Setup {
        let scratch = Scratch("locations")
        let ctl: Vaultctl
        var config: String { scratch.file("etc/locations.toml") }
        var fast: String { scratch.file("fast") }
        var offsite: String { scratch.file("offsite") }

        init() throws {
            // No VAULT_REPO: the locations file decides.
            ctl = Vaultctl(
                repository: "",
                environment: ["VAULT_REPO": "", "VAULT_CONFIG": scratch.file("etc/locations.toml")])
            try ctl.run("init", fast, "--chunk-size", "256K")
            try ctl.run("init", offsite, "--chunk-size", "256K")
        }

        /// The vault names of the repository at `path`.
        func vaults(in path: String) throws -> [String] {
            try ctl.json("-R", path, "vault", "list").compactMap { $0["vault"] as? String }
        }
    }

    func testCommandsFindTheLocationOfWhatTheyNameAndTheSchedulerServesEveryOne() throws {
        let setup = try Setup()
        let ctl = setup.ctl
        XCTAssertTrue(try ctl.run("location", "list").contains("no locations"))
        XCTAssertTrue(try ctl.run("location", "add", "fast", setup.fast).contains("the default"))
        try ctl.run("location", "add", "offsite", setup.offsite)
        let list = try ctl.json("location", "list")
        XCTAssertEqual(list.map { $0["name"] as? String }, ["fast", "offsite"])
        XCTAssertEqual(list.map { $0["default"] as? Bool }, [true, false])

        // New vaults go to the default location, or to the one named.
        let policy = ["--start", "02:00", "--every", "24h", "--incrementals", "0", "--keep-fulls", "3"]
        XCTAssertTrue(try ctl.run(["vault", "create", "prod"] + policy).contains("in location fast"))
        try ctl.run(["vault", "create", "archive", "--location", "offsite"] + policy)
        XCTAssertTrue(try setup.vaults(in: setup.fast).contains("prod"))
        XCTAssertFalse(try setup.vaults(in: setup.fast).contains("archive"))
        XCTAssertTrue(try setup.vaults(in: setup.offsite).contains("archive"))
        let shown =
            try JSONSerialization.jsonObject(
                with: Data(try ctl.run("location", "show", "offsite", "--json").utf8)) as? [String: Any]
        XCTAssertEqual(shown?["vaults"] as? [String], ["archive"])

        // A server added to a vault goes where the vault is; backup, points and export find it.
        let image = setup.scratch.file("db.img")
        let bytes = pseudoRandomBytes(3 << 20, seed: 37)
        XCTAssertTrue(FileManager.default.createFile(atPath: image, contents: Data(bytes)))
        try ctl.run("server", "add", "db", "--vault", "archive", "--disk", "root=\(image)")
        let web = setup.scratch.file("web.img")
        XCTAssertTrue(FileManager.default.createFile(atPath: web, contents: Data(pseudoRandomBytes(1 << 20, seed: 38))))
        try ctl.run("server", "add", "web", "--vault", "prod", "--disk", "root=\(web)")
        try ctl.run("backup", "db", "--name", "now")
        let points = try ctl.json("points", "db")
        XCTAssertEqual(points.count, 1)
        XCTAssertEqual(try ctl.json("-R", setup.fast, "points").count, 0)
        try ctl.run("export", "db/now", "-o", setup.scratch.file("out.img"))
        XCTAssertEqual(try readBytes(setup.scratch.file("out.img")), bytes)

        // The scheduler backs up the due servers of every location in one run.
        let run = try ctl.run("schedule", "run", "--once", "--now", "2030-01-02T02:00", "--json")
        let outcomes =
            (try JSONSerialization.jsonObject(with: Data(run.utf8)) as? [String: Any])?["outcomes"] as? [[String: Any]]
            ?? []
        XCTAssertEqual(
            Set(outcomes.map { "\($0["location"] as? String ?? "")/\($0["server"] as? String ?? "")" }),
            ["fast/web", "offsite/db"], run)
        XCTAssertEqual(try ctl.json("-R", setup.fast, "points", "web").count, 1)
        XCTAssertEqual(try ctl.json("-R", setup.offsite, "points", "db").count, 2)

        // Names are unique across locations; a location holding a vault stays; -R still pins.
        let before = try readBytes(setup.config)
        XCTAssertTrue(
            try setup.ctl.refusal("vault", "create", "archive", "--location", "fast").contains(
                "exists in location offsite")
        )
        XCTAssertTrue(
            try setup.ctl.refusal("server", "add", "db", "--vault", "prod", "--disk", "root=\(image)")
                .contains("exists in location offsite"))
        XCTAssertTrue(try setup.ctl.refusal("location", "remove", "offsite").contains("holds vault(s) archive"))
        XCTAssertEqual(try readBytes(setup.config), before)
        XCTAssertFalse(try setup.vaults(in: setup.fast).contains("archive"))
        XCTAssertTrue(try ctl.run("-R", setup.fast, "vault", "list").contains("prod"))

        // Listings cover every location and name each; one that cannot be opened is named,
        // the rest listed, and the command exits 1; the scheduler still serves the others.
        func pairs(_ rows: [[String: Any]], _ key: String) -> Set<String> {
            Set(rows.map { "\($0["location"] as? String ?? "")/\($0[key] as? String ?? "")" })
        }
        XCTAssertEqual(pairs(try ctl.json("vault", "list"), "vault"), ["fast/prod", "offsite/archive"])
        XCTAssertEqual(pairs(try ctl.json("server", "list"), "server"), ["fast/web", "offsite/db"])
        XCTAssertEqual(rename(setup.offsite, setup.offsite + ".away"), 0)
        let partial = try ctl.attempt(["vault", "list"])
        XCTAssertEqual(partial.status, 1)
        XCTAssertTrue(partial.stdout.contains("prod"), partial.stdout)
        XCTAssertTrue(partial.stderr.contains("location offsite is not listed"), partial.stderr)
        let away = try ctl.attempt(["schedule", "run", "--once", "--now", "2030-01-03T02:00"])
        XCTAssertEqual(away.status, 1)
        XCTAssertTrue(away.stderr.contains("location offsite"), away.stderr)
        XCTAssertEqual(try ctl.json("-R", setup.fast, "points", "web").count, 2)
        XCTAssertEqual(rename(setup.offsite + ".away", setup.offsite), 0)

        // Emptied, it goes, and its repository stays as it was.
        try ctl.run("delete", "--server", "db")
        XCTAssertTrue(try ctl.run("purge").contains("nothing to purge")) // the default location's
        try ctl.run("purge", "--location", "offsite")
        try ctl.run("server", "remove", "db")
        try ctl.run("vault", "remove", "archive")
        try ctl.run("location", "remove", "offsite")
        XCTAssertEqual(try ctl.json("location", "list").map { $0["name"] as? String }, ["fast"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(setup.offsite)/repository.json"))
    }

    func testEachConfigurationErrorIsOneLineAndChangesNothing() throws {
        let setup = try Setup()
        let ctl = setup.ctl
        // No file: commands without -R say how to name a repository; location commands say
        // there are none.
        XCTAssertTrue(try setup.ctl.refusal("vault", "list").contains("location add"))
        XCTAssertTrue(try setup.ctl.refusal("location", "show", "fast").contains("does not exist"))
        // A repository that is not one, or is not there: nothing is written.
        let empty = setup.scratch.file("empty")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        XCTAssertTrue(try setup.ctl.refusal("location", "add", "fast", empty).contains("not a vaultfs repository"))
        XCTAssertTrue(
            try setup.ctl.refusal("location", "add", "fast", setup.scratch.file("nowhere")).contains(
                "not a vaultfs repository"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: setup.config))

        try ctl.run("location", "add", "fast", setup.fast)
        let before = try readBytes(setup.config)
        XCTAssertTrue(try setup.ctl.refusal("location", "add", "fast", setup.offsite).contains("already"))
        XCTAssertTrue(
            try setup.ctl.refusal("location", "add", "again", setup.fast).contains("location 'fast' is that repository")
        )
        XCTAssertTrue(try setup.ctl.refusal("location", "add", "bad/name", setup.offsite).contains("bad location name"))
        XCTAssertTrue(try setup.ctl.refusal("location", "show", "nope").contains("no location named 'nope'"))
        XCTAssertTrue(try setup.ctl.refusal("location", "remove", "nope").contains("no location named 'nope'"))
        XCTAssertTrue(try setup.ctl.refusal("vault", "list", "--location", "nope").contains("no location named 'nope'"))
        XCTAssertTrue(
            try setup.ctl.refusal("vault", "list", "--location", "fast", "-R", setup.fast).contains("not both"))
        XCTAssertEqual(try readBytes(setup.config), before)

        // A file edited by hand with a mistake is refused with its line, never half read.
        for (text, expected) in [
            ("[[location]]\nname = \"a\"\nrepositry = \"/x\"\n", "line 3: unknown key 'repositry'"),
            ("[[location]]\nname = \"a\"\n", "needs a name and a repository"),
            ("[[location]]\nname = \"a\"\nrepository = \"x\"\n", "absolute path"),
            ("[[location]]\nname = \"a\"\nname = \"b\"\n", "line 3: 'name' is given twice"),
            ("name = \"a\"\n", "line 1: 'name' outside a [[location]] table"),
            ("[[location]]\nname = \"a\nrepository = \"/x\"\n", "line 2: a string is not closed"),
        ] {
            XCTAssertTrue(FileManager.default.createFile(atPath: setup.config, contents: Data(text.utf8)))
            XCTAssertTrue(try setup.ctl.refusal("location", "list").contains(expected), text)
            XCTAssertEqual(try String(contentsOfFile: setup.config, encoding: .utf8), text)
        }
    }
}
