import Foundation
import Glibc
import TestSupport
import XCTest

/// `vaultctl serve` as a user and an attacker meet it: a real server on a real repository of
/// a real ext4 disk, reached with curl. Every route of the OpenAPI document refuses a request
/// without the token; forms need their CSRF token; paths never leave a point; bad input is a
/// 4xx with one line; what the API downloads is byte for byte what was backed up.
final class WebConsoleTests: XCTestCase {
    /// A repository with one point of server `web` (an ext4 disk made from a SourceTree),
    /// and the console serving it.
    final class Setup {
        let scratch = Scratch("web")
        let ctl: Vaultctl
        let tree: SourceTree
        let server: ConsoleServer
        let point: String

        /// Instant restores of this test's own, never the machine's /var/lib/vaultfs.
        var restores: String { scratch.file("restores") }

        init(freeze: String? = nil, arguments: [String] = []) throws {
            tree = try SourceTree.make(at: scratch.file("src"))
            try tree.ext4(at: scratch.file("root.img"), size: "64M")
            ctl = Vaultctl(repository: scratch.file("repo"))
            try ctl.run("init", ctl.repository, "--chunk-size", "256K")
            try ctl.run("vault", "create", "prod")
            try ctl.run(
                ["server", "add", "web", "--vault", "prod", "--disk", "root=\(scratch.file("root.img"))"]
                    + (freeze.map { ["--freeze-command", $0] } ?? []))
            try ctl.run("backup", "web", "--name", "one", "--tag", "env=prod")
            point = (try ctl.json("points", "--json").first?["id"] as? String) ?? ""
            server = try ConsoleServer(
                repository: ctl.repository, tokenFile: scratch.file("state/web/token"), arguments: arguments,
                environment: ["VAULT_RESTORE_DIR": scratch.file("restores")].merging(
                    Vaultctl.encryptsByDefault ? ["VAULT_PASSPHRASE": "vaultfs-test-passphrase"] : [:]
                ) { a, _ in a })
        }

        func source(_ relative: String) -> String { "\(tree.path)/\(relative)" }
    }

    /// The committed OpenAPI document.
    static func openAPI() throws -> [String: Any] {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/openapi.json").path
        guard
            let document = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
                as? [String: Any]
        else { throw TestError.failed("\(path) is not a JSON object") }
        return document
    }

    func testEveryRouteOfTheAPIRefusesARequestWithoutTheToken() throws {
        let setup = try Setup()
        defer { setup.server.stop() }
        let paths = try XCTUnwrap(Self.openAPI()["paths"] as? [String: [String: Any]])
        XCTAssertGreaterThanOrEqual(paths.count, 15, "the document lists the API's routes")
        let values = [
            "point": setup.point, "vault": "prod", "server": "web", "disk": "root", "volume": "root",
            "restore": "abcd1234",
        ]
        var checked = 0
        for (template, operations) in paths.sorted(by: { $0.key < $1.key }) {
            var path = "/api/v1" + template
            for (name, value) in values { path = path.replacingOccurrences(of: "{\(name)}", with: value) }
            XCTAssertFalse(path.contains("{"), "a parameter of \(template) has no value here")
            for method in operations.keys where ["get", "post", "put", "delete", "patch"].contains(method) {
                for credential: ConsoleServer.Credential in [
                    .none, .token("not-the-token-" + String(repeating: "0", count: 40)),
                ] {
                    let reply = try setup.server.request(
                        method.uppercased(), path, as: credential, body: method == "get" ? nil : "{}")
                    XCTAssertEqual(reply.status, 401, "\(method) \(path): \(reply.text)")
                    XCTAssertEqual(reply.headers["www-authenticate"], "Bearer realm=\"vaultfs\"", path)
                    XCTAssertEqual(reply.headers["content-security-policy"]?.contains("script-src 'self'"), true)
                    XCTAssertEqual(reply.headers["x-content-type-options"], "nosniff")
                    XCTAssertEqual(reply.headers["referrer-policy"], "no-referrer")
                }
                checked += 1
            }
        }
        XCTAssertGreaterThanOrEqual(checked, 18)
        // Nothing was done by those calls: the point is there, undeleted, and no backup ran.
        let points = try setup.ctl.json("points", "--json")
        XCTAssertEqual(points.count, 1)
        XCTAssertEqual(points.first?["deletion"] as? String, "")
        // The pages send a browser to the login form; a form post without a session is refused.
        for page in ["/points", "/vaults", "/servers", "/history", "/jobs", "/points/\(setup.point)"] {
            let reply = try setup.server.request("GET", page, as: ConsoleServer.Credential.none)
            XCTAssertEqual(reply.status, 303, page)
            XCTAssertTrue(reply.headers["location"]?.hasPrefix("/login?next=/") == true, page)
        }
        let post = try setup.server.request(
            "POST", "/points/\(setup.point)/delete", as: ConsoleServer.Credential.none, form: ["csrf": "x"])
        XCTAssertEqual(post.status, 401)
        // The token file is the owner's alone.
        var status = stat()
        XCTAssertEqual(stat(setup.server.tokenFile, &status), 0)
        XCTAssertEqual(status.st_mode & 0o777, 0o600)
        XCTAssertEqual(setup.server.token.count, 64)
    }

    func testSessionsNeedTheirCSRFTokenAndLoginsAreRateLimited() throws {
        let setup = try Setup()
        defer { setup.server.stop() }
        let server = setup.server
        let (jar, csrf) = try server.logIn(jar: setup.scratch.file("jar"))
        let cookie = try String(contentsOfFile: jar, encoding: .utf8)
        XCTAssertTrue(cookie.contains("#HttpOnly_127.0.0.1"), "the session cookie is HttpOnly: \(cookie)")
        let login = try server.request(
            "POST", "/login", as: .cookies(setup.scratch.file("jar2")), form: ["token": server.token])
        XCTAssertTrue(login.headers["set-cookie"]?.contains("SameSite=Strict") == true)
        XCTAssertTrue(login.headers["set-cookie"]?.contains("HttpOnly") == true)

        // A form without its token, or with another, is refused and changes nothing.
        let other = (csrf.first == "0" ? "1" : "0") + csrf.dropFirst()
        for form in [[:], ["csrf": other], ["csrf": ""]] {
            let reply = try server.request("POST", "/points/\(setup.point)/delete", as: .cookies(jar), form: form)
            XCTAssertEqual(reply.status, 403, "\(form): \(reply.text)")
        }
        let api = try server.request("POST", "/api/v1/points/\(setup.point)/delete", as: .cookies(jar))
        XCTAssertEqual(api.status, 403, "a script's call on a session needs X-CSRF-Token")
        XCTAssertEqual(try setup.ctl.json("points", "--json").count, 1, "nothing was deleted")
        // With it, the form deletes, and the point page offers undelete.
        let delete = try server.request(
            "POST", "/points/\(setup.point)/delete", as: .cookies(jar), form: ["csrf": csrf])
        XCTAssertEqual(delete.status, 303, delete.text)
        XCTAssertEqual(try setup.ctl.json("points", "--json").count, 0)
        let page = try server.request("GET", "/points/\(setup.point)", as: .cookies(jar))
        XCTAssertTrue(page.text.contains("id=\"undelete\""), page.text)
        let undelete = try server.request(
            "POST", "/api/v1/points/\(setup.point)/undelete", as: .cookies(jar), headers: ["X-CSRF-Token: \(csrf)"])
        XCTAssertEqual(undelete.status, 200, undelete.text)
        XCTAssertEqual(try setup.ctl.json("points", "--json").count, 1)

        // Logging out ends the session: its cookie no longer opens anything.
        let stale = setup.scratch.file("stale")
        try FileManager.default.copyItem(atPath: jar, toPath: stale)
        XCTAssertEqual(try server.request("POST", "/logout", as: .cookies(jar), form: ["csrf": csrf]).status, 303)
        XCTAssertEqual(try server.request("GET", "/api/v1/vaults", as: .cookies(stale)).status, 401)

        // A login form never sends the browser to another site.
        let away = try server.request(
            "POST", "/login", as: .cookies(setup.scratch.file("jar3")),
            form: ["token": server.token, "next": "//evil.example/x"])
        XCTAssertEqual(away.headers["location"], "/points")

        // Five wrong tokens a minute, then the next guesses are told to wait.
        for _ in 0..<5 {
            let reply = try server.request(
                "POST", "/login", as: .cookies(setup.scratch.file("jar4")), form: ["token": "wrong"])
            XCTAssertEqual(reply.status, 401)
        }
        for guess in ["wrong", "", String(server.token.dropLast())] {
            let limited = try server.request(
                "POST", "/login", as: .cookies(setup.scratch.file("jar4")), form: ["token": guess])
            XCTAssertEqual(limited.status, 429, limited.text)
            XCTAssertNotNil(limited.headers["retry-after"])
        }
        // The limit holds back guessing, not the token's holder (every local user shares
        // 127.0.0.1): the token still logs in, and still works for the API.
        let holder = try server.request(
            "POST", "/login", as: .cookies(setup.scratch.file("jar5")), form: ["token": server.token])
        XCTAssertEqual(holder.status, 303)
        XCTAssertEqual(try server.request("GET", "/api/v1/vaults").status, 200)
        // The login page says nothing of where the backups are.
        let form = try server.request("GET", "/login", as: ConsoleServer.Credential.none)
        XCTAssertFalse(form.text.contains(setup.ctl.repository), form.text)
    }

    func testPathsInsideAPointNeverLeaveIt() throws {
        let setup = try Setup()
        defer { setup.server.stop() }
        let base = "/api/v1/points/\(setup.point)/files/root"
        let hostname = try setup.server.request("GET", "\(base)/content?path=/etc/hostname")
        XCTAssertEqual(hostname.status, 200)
        XCTAssertEqual(hostname.body, try readBytes(setup.source("etc/hostname")))
        let attempts = [
            "path=/../etc/hostname", "path=/etc/../../etc/hostname", "path=..", "path=../../../../etc/passwd",
            "path=%2e%2e/etc/hostname", "path=/%2e%2e/%2e%2e/etc/passwd", "path=/etc/..%2f..%2fetc%2fpasswd",
            "path=%2F..%2F..%2Fetc%2Fpasswd", "path=/etc/hostname%00", "path=etc/hostname",
            "path=/%252e%252e/etc/passwd", "path=%c0%ae%c0%ae/etc/passwd", "path=/etc/hostname&path=/etc/passwd",
        ]
        for query in attempts {
            for route in ["\(base)/content", base, "/points/\(setup.point)/files/root"] {
                let reply = try setup.server.request("GET", "\(route)?\(query)")
                XCTAssertTrue(
                    [400, 404].contains(reply.status), "\(route)?\(query) gave \(reply.status): \(reply.text)")
                XCTAssertFalse(reply.text.contains("root:"), "\(query) reached a passwd file")
            }
        }
        // The volume and point in the path are names, never paths either.
        for path in [
            "/api/v1/points/\(setup.point)/files/..%2f..%2fetc/content?path=/", "/api/v1/points/..%2f..%2f/volumes",
            "/api/v1/points/\(setup.point)/disks/..%2froot/image", "/api/v1/points/../../etc/passwd",
        ] {
            let reply = try setup.server.request("GET", path)
            XCTAssertTrue([400, 404].contains(reply.status), "\(path) gave \(reply.status): \(reply.text)")
        }
    }

    func testBadInputGetsOneLineAndA4xxNeverA500() throws {
        let setup = try Setup()
        defer { setup.server.stop() }
        let cases: [(String, String, String?, Int)] = [
            ("GET", "/api/v1/points?type=weekly", nil, 400), ("GET", "/api/v1/points?limit=0", nil, 400),
            ("GET", "/api/v1/points?limit=99999999999999999999", nil, 400),
            ("GET", "/api/v1/points?offset=-1", nil, 400),
            ("GET", "/api/v1/points?since=yesterday", nil, 400), ("GET", "/api/v1/points?since=infd", nil, 400),
            ("GET", "/api/v1/points?colour=red", nil, 400), ("GET", "/api/v1/points?server=nobody", nil, 404),
            ("GET", "/api/v1/points?server=a%2Fb", nil, 400), ("GET", "/api/v1/points?status=lost", nil, 400),
            ("GET", "/api/v1/points?%zz=1", nil, 400), ("GET", "/api/v1/points?vault=prod&vault=dev", nil, 400),
            ("GET", "/api/v1/points/zz", nil, 400), ("GET", "/api/v1/points/abcdef12", nil, 404),
            ("GET", "/api/v1/vaults/nope", nil, 404), ("GET", "/api/v1/nothing", nil, 404),
            ("POST", "/api/v1/servers/web/backup", "not json", 400),
            ("POST", "/api/v1/servers/web/backup", #"{"name": 7}"#, 400),
            ("POST", "/api/v1/servers/web/backup", #"{"nmae": "x"}"#, 400),
            ("POST", "/api/v1/servers/web/backup", #"{"name": "../x"}"#, 400),
            ("POST", "/api/v1/servers/web/backup", #"{"description": "\#(String(repeating: "d", count: 300))"}"#, 400),
            ("POST", "/api/v1/servers/nobody/backup", "{}", 404),
            ("POST", "/api/v1/vaults/prod/retention", #"{"dryrun": true}"#, 400),
            ("POST", "/api/v1/purge", #"{"olderThan": "soon"}"#, 400),
            ("POST", "/api/v1/points/\(setup.point)/delete", #"{"force": true}"#, 400),
            ("POST", "/api/v1/servers/web/backup", String(repeating: "x", count: 100_000), 413),
        ]
        for (method, path, body, expected) in cases {
            let reply = try setup.server.request(method, path, body: body)
            XCTAssertEqual(reply.status, expected, "\(method) \(path) \(body?.prefix(40) ?? ""): \(reply.text)")
            if reply.status != 413 {
                let error = (try? reply.json() as? [String: Any])?["error"] as? [String: Any]
                let message = error?["message"] as? String ?? ""
                XCTAssertFalse(message.isEmpty, "\(path): no message in \(reply.text)")
                XCTAssertFalse(message.contains("\n"), "\(path): one line: \(message)")
            }
        }
        // Other methods on a route are named; HEAD is GET without its body.
        let trace = try setup.server.request("PUT", "/api/v1/vaults")
        XCTAssertEqual(trace.status, 405)
        XCTAssertEqual(trace.headers["allow"], "GET, HEAD")
        let head = try setup.server.request("HEAD", "/api/v1/points/\(setup.point)/disks/root/image")
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.headers["content-length"], "\(64 << 20)")
        XCTAssertTrue(head.body.isEmpty)
        XCTAssertEqual(try setup.server.request("POST", "/api/v1/points/\(setup.point)/undelete").status, 409)
        // Path parameters are percent-decoded once, as a browser encodes them.
        XCTAssertEqual(try setup.server.request("GET", "/api/v1/vaults/pr%6fd").status, 200)
        // A range that ends past anything (Int64.max) is clamped to the image, and the server lives.
        for range in ["bytes=0-9223372036854775807", "bytes=9223372036854775807-", "bytes=-9223372036854775807"] {
            let reply = try setup.server.request(
                "GET", "/api/v1/points/\(setup.point)/disks/root/image", headers: ["Range: \(range)"])
            XCTAssertTrue([200, 206, 416].contains(reply.status), "\(range): \(reply.status)")
        }
        XCTAssertTrue(setup.server.process.isRunning, "no input takes the console down")
        // The tag limit is the core's: eleven are refused, as `backup --tag` refuses them.
        let tags = (0..<11).map { "\"k\($0)\": \"v\"" }.joined(separator: ", ")
        XCTAssertEqual(
            try setup.server.request("POST", "/api/v1/servers/web/backup", body: "{\"tags\": {\(tags)}}").status, 400)
        XCTAssertEqual(try setup.ctl.json("history", "--json").count, 1, "no refused call started a backup")
    }

    func testBackupNowProgressDeleteUndeleteAndDownloadsMatchTheDisk() throws {
        let setup = try Setup(freeze: "sleep 2")
        defer { setup.server.stop() }
        let server = setup.server
        // Live progress: the event stream shows the job while it runs.
        let started = try server.request(
            "POST", "/api/v1/servers/web/backup",
            body: #"{"name": "from-web", "description": "taken in the console", "tags": {"ticket": "OPS-7"}}"#)
        XCTAssertEqual(started.status, 202, started.text)
        let job = try XCTUnwrap(started.json() as? [String: Any])
        XCTAssertEqual(job["status"] as? String, "Creating")
        let id = try XCTUnwrap(job["id"] as? String)
        let events = try server.request("GET", "/api/v1/jobs/events", timeout: 2)
        XCTAssertTrue(events.text.contains("event: jobs"), events.text)
        XCTAssertTrue(events.text.contains(id), "the running job is in the stream: \(events.text)")
        XCTAssertEqual(events.headers["content-type"], "text/event-stream")
        var point: [String: Any] = [:]
        let deadline = Date().addingTimeInterval(60)
        repeat {
            usleep(200_000)
            point = try XCTUnwrap(try server.request("GET", "/api/v1/points/\(id)").json() as? [String: Any])
        } while point["status"] as? String == "Creating" && Date() < deadline
        XCTAssertEqual(point["status"] as? String, "Active", "\(point)")
        XCTAssertEqual(point["description"] as? String, "taken in the console")
        XCTAssertEqual((point["tags"] as? [String: String])?["ticket"], "OPS-7")
        XCTAssertEqual((try server.request("GET", "/api/v1/jobs").json() as? [Any])?.count, 0, "no job runs now")
        // The same objects as --json.
        let cli = try setup.ctl.json("points", "--json")
        let page = try XCTUnwrap(try server.request("GET", "/api/v1/points").json() as? [String: Any])
        XCTAssertEqual(page["total"] as? Int, 2)
        let listed = try XCTUnwrap(page["points"] as? [[String: Any]])
        XCTAssertEqual(listed.map { $0["id"] as? String }, cli.reversed().map { $0["id"] as? String }, "newest first")
        XCTAssertEqual(
            NSDictionary(dictionary: listed[0]), NSDictionary(dictionary: cli.last ?? [:]),
            "the same object as points --json")
        // Filters and pages.
        let byTag = try XCTUnwrap(try server.request("GET", "/api/v1/points?tag=ticket=OPS-7").json() as? [String: Any])
        XCTAssertEqual((byTag["points"] as? [[String: Any]])?.map { $0["id"] as? String }, [id])
        let second = try XCTUnwrap(
            try server.request("GET", "/api/v1/points?limit=1&offset=1").json() as? [String: Any])
        XCTAssertEqual((second["points"] as? [[String: Any]])?.first?["name"] as? String, "one")
        XCTAssertEqual(second["total"] as? Int, 2)

        // A file and a folder downloaded from inside the point are the source's bytes.
        let base = "/api/v1/points/\(id)/files/root/content?path="
        let large = try server.request("GET", base + "/var/lib/data/large.bin")
        XCTAssertEqual(large.status, 200)
        XCTAssertEqual(large.body, try readBytes(setup.source("var/lib/data/large.bin")))
        XCTAssertEqual(large.headers["content-length"], "\(3 << 20)")
        let slice = try server.request("GET", base + "/var/lib/data/large.bin", headers: ["Range: bytes=1000-1999"])
        XCTAssertEqual(slice.status, 206)
        XCTAssertEqual(slice.headers["content-range"], "bytes 1000-1999/\(3 << 20)")
        XCTAssertEqual(slice.body, Array(try readBytes(setup.source("var/lib/data/large.bin"))[1000..<2000]))
        let tar = try server.request("GET", base + "/etc")
        XCTAssertEqual(tar.headers["content-type"], "application/x-tar")
        let unpacked = setup.scratch.file("unpacked")
        try FileManager.default.createDirectory(atPath: unpacked, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: setup.scratch.file("etc.tar"), contents: Data(tar.body))
        try mustRun(["tar", "-xpf", setup.scratch.file("etc.tar"), "-C", unpacked])
        for name in ["hostname", "nginx/nginx.conf", "shadow"] {
            XCTAssertEqual(try readBytes("\(unpacked)/etc/\(name)"), try readBytes(setup.source("etc/\(name)")), name)
        }
        // A folder's listing, a page at a time: the pages together are the whole listing.
        let listing = "/api/v1/points/\(id)/files/root?path=/etc"
        let whole = try XCTUnwrap(try server.request("GET", listing).json() as? [String: Any])
        let names = try XCTUnwrap(whole["entries"] as? [[String: Any]]).compactMap { $0["name"] as? String }
        XCTAssertEqual(whole["total"] as? Int, names.count)
        XCTAssertGreaterThan(names.count, 2)
        var paged: [String] = []
        for offset in 0...names.count {
            let page = try XCTUnwrap(
                try server.request("GET", listing + "&limit=1&offset=\(offset)").json() as? [String: Any])
            XCTAssertEqual(page["total"] as? Int, names.count)
            paged += try XCTUnwrap(page["entries"] as? [[String: Any]]).compactMap { $0["name"] as? String }
        }
        XCTAssertEqual(paged, names, "one entry a page, then none past the end")
        for bad in ["limit=0", "limit=10001", "offset=-1", "limit=1e3", "offset=99999999999"] {
            XCTAssertEqual(try server.request("GET", listing + "&" + bad).status, 400, bad)
        }
        let html = String(
            decoding: try server.request("GET", "/points/\(id)/files/root?path=/etc&limit=1&offset=1").body,
            as: UTF8.self)
        XCTAssertTrue(html.contains("2–2 of \(names.count)"), html)
        XCTAssertTrue(html.contains("rel=\"prev\"") && html.contains("rel=\"next\""), html)
        // Past the end: none shown, and Previous goes to the last page.
        let pastEnd = String(
            decoding: try server.request("GET", "/points/\(id)/files/root?path=/etc&limit=1&offset=5000").body,
            as: UTF8.self)
        XCTAssertTrue(pastEnd.contains("none of \(names.count)"), pastEnd)
        XCTAssertTrue(pastEnd.contains("offset=\(names.count - 1)&amp;limit=1\" rel=\"prev\""), pastEnd)
        // A file lists itself, whatever the page.
        let file = try XCTUnwrap(
            try server.request("GET", "/api/v1/points/\(id)/files/root?path=/etc/hostname&offset=3").json()
                as? [String: Any])
        XCTAssertEqual((file["entries"] as? [Any])?.count, 1)
        XCTAssertEqual(file["offset"] as? Int, 0)
        // The disk image, whole and in ranges, is the disk as it was backed up.
        let disk = try readBytes(setup.scratch.file("root.img"))
        let image = try server.request("GET", "/api/v1/points/\(id)/disks/root/image")
        XCTAssertEqual(image.status, 200)
        XCTAssertEqual(image.headers["content-length"], "\(disk.count)")
        XCTAssertEqual(image.headers["accept-ranges"], "bytes")
        XCTAssertTrue(image.body == disk, "the downloaded image is the disk")
        for (range, expected) in [
            ("bytes=0-511", 0..<512), ("bytes=1048000-1049999", 1_048_000..<1_050_000),
            ("bytes=-4096", (disk.count - 4096)..<disk.count),
            ("bytes=\(disk.count - 10)-", (disk.count - 10)..<disk.count),
            ("bytes=\(disk.count - 10)-\(disk.count + 100)", (disk.count - 10)..<disk.count),
        ] {
            let reply = try server.request("GET", "/api/v1/points/\(id)/disks/root/image", headers: ["Range: \(range)"])
            XCTAssertEqual(reply.status, 206, range)
            XCTAssertTrue(reply.body == Array(disk[expected]), range)
        }
        let past = try server.request(
            "GET", "/api/v1/points/\(id)/disks/root/image", headers: ["Range: bytes=\(disk.count)-"])
        XCTAssertEqual(past.status, 416)
        XCTAssertEqual(past.headers["content-range"], "bytes */\(disk.count)")
        let fsck = setup.scratch.file("image.img")
        _ = FileManager.default.createFile(atPath: fsck, contents: Data(image.body))
        try Ext4Image.check(fsck)

        // Delete, then undelete, through the API; the CLI sees each.
        let deleted = try XCTUnwrap(try server.request("POST", "/api/v1/points/\(id)/delete").json() as? [String: Any])
        XCTAssertEqual(deleted["deletion"] as? String, "Soft deleted")
        XCTAssertEqual(try setup.ctl.json("points", "--json").count, 1)
        XCTAssertEqual(try server.request("GET", "/api/v1/points/\(id)/disks/root/image").status, 409)
        XCTAssertEqual(try server.request("POST", "/api/v1/points/\(id)/delete").status, 409, "deleted already")
        let restored = try XCTUnwrap(
            try server.request("POST", "/api/v1/points/\(id)/undelete").json() as? [String: Any])
        XCTAssertEqual(restored["deletion"] as? String, "")
        XCTAssertEqual(try setup.ctl.json("points", "--json").count, 2)
        // Verify and a dry retention run answer with the commands' objects.
        let verify = try XCTUnwrap(try server.request("POST", "/api/v1/verify", body: "{}").json() as? [String: Any])
        XCTAssertEqual(verify["clean"] as? Bool, true)
        let retention = try XCTUnwrap(
            try server.request("POST", "/api/v1/vaults/prod/retention", body: #"{"dryRun": true}"#).json()
                as? [String: Any])
        XCTAssertEqual(retention["dryRun"] as? Bool, true)
    }

    /// schemathesis (PyPI) against docs/openapi.json: generated calls to every route but the
    /// hour-long event stream, each checked for a 5xx, a status or a body the document does not
    /// give, and a refusal of a valid call (scripts/api-spec-check.sh; bounded: 50 examples a
    /// route, a fixed seed, 10 minutes at most).
    func testTheAPIKeepsToItsOpenAPIDocumentUnderSchemathesis() throws {
        let setup = try Setup()
        defer { setup.server.stop() }
        // A second server and a deleted point, so the listings have more than one of each.
        try setup.ctl.run("server", "add", "db", "--disk", "root=\(setup.scratch.file("root.img"))")
        try setup.ctl.run("backup", "db", "--name", "gone")
        try setup.ctl.run("delete", "db/gone")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/api-spec-check.sh").path
        let result = try runCommand([script, "\(setup.server.port)", setup.server.tokenFile], timeout: 700)
        XCTAssertEqual(result.status, 0, "\(result.stdout.suffix(6000))\n\(result.stderr.suffix(2000))")
        XCTAssertTrue(setup.server.process.isRunning, "schemathesis did not take the console down")
    }

    func testListeningBeyondThisHostNeedsTLSAndARelaxedTokenFileIsRefused() throws {
        let setup = try Setup()
        setup.server.stop()
        let serve = [
            productPath("vaultctl"), "serve", "-R", setup.ctl.repository, "--token-file", setup.server.tokenFile,
        ]
        let open = try runCommand(serve + ["--listen", "0.0.0.0:0"], timeout: 30)
        XCTAssertNotEqual(open.status, 0)
        XCTAssertTrue(open.stderr.contains("without TLS"), open.stderr)
        XCTAssertEqual(open.stderr.split(separator: "\n").count, 1, open.stderr)
        let half = try runCommand(serve + ["--listen", "0.0.0.0:0", "--tls-cert", "/nonexistent"], timeout: 30)
        XCTAssertTrue(half.stderr.contains("--tls-cert and --tls-key go together"), half.stderr)
        // A token file others may read is refused, named, with the fix.
        chmod(setup.server.tokenFile, 0o644)
        let relaxed = try runCommand(serve + ["--listen", "127.0.0.1:0"], timeout: 30)
        XCTAssertNotEqual(relaxed.status, 0)
        XCTAssertTrue(relaxed.stderr.contains("chmod 600"), relaxed.stderr)
        chmod(setup.server.tokenFile, 0o600)

        // With a certificate, it listens on every address, over TLS only.
        let cert = setup.scratch.file("cert.pem")
        let key = setup.scratch.file("key.pem")
        try mustRun([
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days",
            "2", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert,
        ])
        let tls = try ConsoleServer(
            repository: setup.ctl.repository, tokenFile: setup.server.tokenFile,
            arguments: ["--listen", "0.0.0.0:0", "--tls-cert", cert, "--tls-key", key])
        defer { tls.stop() }
        XCTAssertTrue(tls.url.hasPrefix("https://"), tls.url)
        let reply = try tls.request("GET", "/api/v1/vaults")
        XCTAssertEqual(reply.status, 200, reply.text)
        XCTAssertNotNil(reply.headers["strict-transport-security"])
        let plain = try runCommand(
            [
                "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
                "http://127.0.0.1:\(tls.port)/",
            ])
        XCTAssertNotEqual(plain.stdout, "200", "plain HTTP is not served on the TLS port")
    }

    func testRestoresGoOntoTheDisksThisHostBacksUpDiffOnlyAndInstant() throws {
        let setup = try Setup()
        defer { setup.server.stop() }
        let server = setup.server
        let disk = setup.scratch.file("root.img")
        let original = try readBytes(disk)
        // The server's disk changes after the point (a damaged or upgraded server).
        try mustRun([
            "dd", "if=/dev/urandom", "of=\(disk)", "bs=64K", "count=16", "seek=40", "conv=notrunc", "status=none",
        ])
        XCTAssertNotEqual(try readBytes(disk), original)
        let restored = try server.request("POST", "/api/v1/points/\(setup.point)/restore", body: #"{"disk": "root"}"#)
        XCTAssertEqual(restored.status, 200, restored.text)
        let report = try XCTUnwrap(restored.json() as? [String: Any])
        XCTAssertEqual(report["target"] as? String, disk, "the path this host backs the disk up from")
        // The changed megabyte was zeros at the point: it is zeroed, and the rest left as it was.
        let changed = (report["writtenBytes"] as? Int ?? 0) + (report["zeroedBytes"] as? Int ?? 0)
        XCTAssertGreaterThanOrEqual(changed, 1 << 20)
        XCTAssertLessThan(changed, 8 << 20, "only what differs is written: \(report)")
        XCTAssertTrue(try readBytes(disk) == original, "the disk holds the point again")

        // Instant: through a running mount of the repository, then finished through the API.
        try mustRun([
            "dd", "if=/dev/urandom", "of=\(disk)", "bs=64K", "count=16", "seek=100", "conv=notrunc", "status=none",
        ])
        let mount = try MountedRepository(
            repository: setup.ctl.repository, at: setup.scratch.file("mnt"),
            environment: ["VAULT_RESTORE_DIR": setup.restores])
        defer { mount.unmount() }
        let started = try server.request(
            "POST", "/api/v1/points/\(setup.point)/restore", body: #"{"disk": "root", "instant": true}"#)
        XCTAssertEqual(started.status, 202, started.text)
        let view = try XCTUnwrap(started.json() as? [String: Any])
        let id = try XCTUnwrap(view["id"] as? String)
        XCTAssertEqual(view["image"] as? String, "\(mount.mountpoint)/.restores/\(id)/root.img")
        let deadline = Date().addingTimeInterval(60)
        var state = ""
        repeat {
            usleep(200_000)
            let list = try XCTUnwrap(try server.request("GET", "/api/v1/restores").json() as? [[String: Any]])
            state = list.first { $0["id"] as? String == id }?["state"] as? String ?? ""
        } while state != "complete" && Date() < deadline
        XCTAssertEqual(state, "complete")
        let jar = try server.logIn(jar: setup.scratch.file("jar")).jar
        let jobs = try server.request("GET", "/jobs", as: .cookies(jar))
        XCTAssertTrue(jobs.text.contains("data-restore=\"\(id)\""), "the jobs page lists the restore")
        // The point's page offers the restore onto this host's disk, after a confirmation page.
        let page = try server.request("GET", "/points/\(setup.point)", as: .cookies(jar))
        XCTAssertTrue(page.text.contains("Restore onto \(disk)"), page.text)
        let confirm = try server.request("GET", "/points/\(setup.point)/restore?disk=root", as: .cookies(jar))
        XCTAssertEqual(confirm.status, 200)
        XCTAssertTrue(confirm.text.contains("id=\"confirm-restore\""), confirm.text)
        let finished = try server.request("POST", "/api/v1/restores/\(id)/finish")
        XCTAssertEqual(finished.status, 200, finished.text)
        XCTAssertEqual((try finished.json() as? [String: Any])?["outcome"] as? String, "finished")
        XCTAssertTrue(try readBytes(disk) == original, "the instant restore filled the disk with the point")
        XCTAssertEqual(try server.request("POST", "/api/v1/restores/\(id)/finish").status, 404, "ended already")

        // Nowhere else: a server this host does not back up is refused, and nothing is written.
        try FileManager.default.removeItem(atPath: "\(testConfigDirectory)/servers/web.conf")
        let refused = try server.request("POST", "/api/v1/points/\(setup.point)/restore", body: "{}")
        XCTAssertEqual(refused.status, 409, refused.text)
        XCTAssertEqual(
            try server.request("POST", "/api/v1/points/\(setup.point)/restore", body: #"{"to": "/etc/passwd"}"#).status,
            400, "a target cannot be named")
    }

    func testStoppingEndsTheEventStreamAndDownloadsAtOnce() throws {
        let setup = try Setup()
        let server = setup.server
        // An event stream (an hour long) and a slow image download are open when SIGTERM comes.
        let stream = Process()
        stream.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        stream.arguments = [
            "-s", "-N", "--max-time", "60", "-H", "Authorization: Bearer \(server.token)",
            server.url + "/api/v1/jobs/events",
        ]
        stream.standardOutput = FileHandle.nullDevice
        let download = Process()
        download.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        download.arguments = [
            "-s", "--limit-rate", "1M", "--max-time", "60", "-o", "/dev/null", "-H",
            "Authorization: Bearer \(server.token)", server.url + "/api/v1/points/\(setup.point)/disks/root/image",
        ]
        try stream.run()
        try download.run()
        defer {
            for process in [stream, download] where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        usleep(1_500_000)
        let start = Date()
        server.process.terminate()
        let deadline = Date().addingTimeInterval(20)
        while server.process.isRunning && Date() < deadline { usleep(50_000) }
        XCTAssertFalse(server.process.isRunning, "the console stops within 20 s with clients connected")
        XCTAssertLessThan(Date().timeIntervalSince(start), 20)
        while (stream.isRunning || download.isRunning) && Date() < deadline { usleep(50_000) }
        XCTAssertFalse(download.isRunning)
        if !download.isRunning {
            XCTAssertNotEqual(download.terminationStatus, 0, "a download cut short is a failed download")
        }
    }

    func testAUnixSocketIsOwnerOnlyAndNotTakenFromAnotherServer() throws {
        let setup = try Setup()
        defer { setup.server.stop() }
        let socket = setup.scratch.file("web.sock")
        let serve = [
            productPath("vaultctl"), "serve", "-R", setup.ctl.repository, "--token-file", setup.server.tokenFile,
            "--listen", "unix:\(socket)",
        ]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: serve[0])
        process.arguments = Array(serve.dropFirst())
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        let deadline = Date().addingTimeInterval(30)
        var status = stat()
        while Date() < deadline && (stat(socket, &status) != 0 || status.st_mode & 0o777 != 0o600) { usleep(50_000) }
        XCTAssertEqual(status.st_mode & 0o777, 0o600, "the socket is the owner's alone")
        let reply = try runCommand([
            "curl", "-s", "--unix-socket", socket, "-H", "Authorization: Bearer \(setup.server.token)",
            "http://localhost/api/v1/vaults",
        ])
        XCTAssertTrue(reply.stdout.contains("\"prod\""), reply.stdout + reply.stderr)
        // A second server does not take the socket of a running one.
        let second = try runCommand(serve, timeout: 30)
        XCTAssertNotEqual(second.status, 0)
        XCTAssertTrue(second.stderr.contains("already serves"), second.stderr)
        // Nor a path that is a file.
        _ = FileManager.default.createFile(atPath: setup.scratch.file("file"), contents: Data("keep".utf8))
        let file = try runCommand(
            Array(serve.dropLast()) + ["unix:\(setup.scratch.file("file"))"], timeout: 30)
        XCTAssertTrue(file.stderr.contains("not a socket"), file.stderr)
        XCTAssertEqual(try String(contentsOfFile: setup.scratch.file("file"), encoding: .utf8), "keep")
    }
}
