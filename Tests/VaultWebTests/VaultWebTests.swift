import Foundation
import HTTPTypes
import Mustache
import VaultCore
import XCTest

@testable import VaultWeb

/// The console's own logic in-process: ranges, query text, listen addresses, sessions and the
/// login limit, the route table, where a login may go on to.
final class VaultWebTests: XCTestCase {
    func testRangesAreClampedAndNeverOverflow() throws {
        let size: Int64 = 1000
        let cases: [(String?, ByteRange?)] = [
            (nil, nil), ("bytes=0-99", ByteRange(start: 0, end: 100)), ("bytes=990-", ByteRange(start: 990, end: 1000)),
            ("bytes=-10", ByteRange(start: 990, end: 1000)), ("bytes=-5000", ByteRange(start: 0, end: 1000)),
            ("bytes=0-9223372036854775807", ByteRange(start: 0, end: 1000)),
            ("bytes=999-9223372036854775807", ByteRange(start: 999, end: 1000)),
            // Not read: answered whole, as RFC 9110 allows.
            ("bytes=5-1", nil), ("bytes=0-1,5-6", nil), ("items=0-1", nil), ("bytes=a-b", nil), ("bytes=-", nil),
            ("bytes=99999999999999999999-", nil), ("bytes=+1-2", nil),
        ]
        for (header, expected) in cases {
            XCTAssertEqual(try ByteRange.parse(header, size: size), expected, header ?? "none")
        }
        for header in ["bytes=1000-", "bytes=9223372036854775807-", "bytes=-0"] {
            XCTAssertThrowsError(try ByteRange.parse(header, size: size), header)
        }
        for header in ["bytes=-5", "bytes=0-", "bytes=0-0"] {
            XCTAssertThrowsError(try ByteRange.parse(header, size: 0), "an empty body has no range: \(header)")
        }
    }

    func testQueriesAndFormsDecodeOnceAndRefuseWhatIsNotUTF8() throws {
        XCTAssertEqual(try Query.parse("a=1&b=x%20y+z&c=&d"), ["a": "1", "b": "x y z", "c": "", "d": ""])
        XCTAssertEqual(try Query.parse("path=%2e%2e%2fetc"), ["path": "../etc"])
        XCTAssertEqual(try Query.parse("path=%252e"), ["path": "%2e"], "decoded once only")
        for text in ["a=%zz", "a=%c0%ae", "a=%", "a=%4", "a=1&a=2", "a=%ff"] {
            XCTAssertThrowsError(try Query.parse(text), text)
        }
        XCTAssertEqual(Query.decode("v%31+x", plusIsSpace: false), "v1+x")
        XCTAssertEqual(Query.encode("/etc/a b&c=ä"), "/etc/a%20b%26c%3D%C3%A4")
    }

    func testOnlyLoopbackAndSocketsAreLocal() throws {
        let local = ["127.0.0.1:8200", "127.1.2.3:0", "[::1]:8200", "localhost:8200", "unix:/run/vaultfs/web.sock"]
        for text in local { XCTAssertTrue(try ConsoleOptions.Listen.parse(text).isLocal, text) }
        for text in [
            "0.0.0.0:8200", "[::]:8200", "192.168.1.5:80", "example.com:443", "127.0.0.1.example.com:1",
            "127.evil.example.com:1",
        ] {
            XCTAssertFalse(try ConsoleOptions.Listen.parse(text).isLocal, text)
        }
        for text in ["8200", "127.0.0.1", "127.0.0.1:99999", ":8200", "unix:relative.sock", "a b:1", "host:-1"] {
            XCTAssertThrowsError(try ConsoleOptions.Listen.parse(text), text)
        }
        let open = ConsoleOptions(
            listen: try .parse("0.0.0.0:8443"), tlsCertificate: nil, tlsKey: nil, tokenFile: "/tmp/token")
        XCTAssertThrowsError(try open.check())
        var secured = open
        secured.tlsCertificate = "/c"
        XCTAssertThrowsError(try secured.check(), "a certificate without its key")
        secured.tlsKey = "/k"
        XCTAssertNoThrow(try secured.check())
    }

    func testSessionsLastTheirTimeAndFailedLoginsAreLimitedPerClient() {
        let access = Access(token: "the-token-0123456789")
        XCTAssertTrue(access.isToken("the-token-0123456789"))
        XCTAssertFalse(access.isToken("the-token-012345678"))
        XCTAssertFalse(access.isToken(""))
        let now = Date(timeIntervalSince1970: 1_900_000_000)
        let session = access.startSession(now: now)
        XCTAssertEqual(access.session(session.id, now: now)?.csrf, session.csrf)
        XCTAssertNil(access.session(session.id, now: now + Access.sessionLifetime + 1), "it expires")
        XCTAssertNil(access.session(session.csrf, now: now), "the CSRF token is no session id")
        access.endSession(session.id)
        XCTAssertNil(access.session(session.id, now: now))
        XCTAssertTrue(access.matches(session.csrf, session.csrf))
        XCTAssertFalse(access.matches(String(session.csrf.dropLast()), session.csrf))

        for _ in 0..<Access.allowedFailures { access.recordFailure(client: "10.0.0.1", now: now) }
        XCTAssertNotNil(access.loginWait(client: "10.0.0.1", now: now + 1))
        XCTAssertNil(access.loginWait(client: "10.0.0.2", now: now + 1), "another client is not held back")
        XCTAssertNil(access.loginWait(client: "10.0.0.1", now: now + Access.failureWindow + 1), "a minute later")
    }

    func testEveryPageEscapesEachScalarOfWhatItShows() throws {
        let pages = try Pages()
        // Joined with a combining mark, or after U+0600, `"` and `<` are one Character with
        // it: escaping whole characters would let these through.
        let hostile = [
            "/\"\u{301}>\u{301}\u{600}<meta http-equiv=refresh content=0;url=//evil>",
            "\u{600}<form method=post action=/points/x/delete>", "a'\u{301} onmouseover='x", "<script>x</script>",
        ]
        for text in hostile {
            let page = pages.render(
                "login", title: text, values: ["next": text, "failed": true], csrf: "", loggedIn: false,
                repository: text)
            let files =
                pages.library.render(
                    [
                        "entries": [
                            ["name": text, "isFolder": false, "isFile": true, "download": "/d", "target": text]
                        ],
                        "crumbs": [["name": text, "href": "/x"]], "point": "p", "volume": text,
                    ], withTemplate: "files") ?? ""
            for output in [page, files] {
                XCTAssertFalse(output.contains("<meta http-equiv"), output)
                XCTAssertFalse(output.contains("<form method=post action=/points/x"), output)
                XCTAssertFalse(output.contains("<script>"), output)
                XCTAssertFalse(
                    output.unicodeScalars.split(separator: "\u{600}").dropFirst().contains { $0.first == "<" })
            }
            XCTAssertFalse(page.contains("/\"\u{301}>"), "the quote is escaped whatever follows it")
        }
        XCTAssertEqual(ScalarHTML().escapeText("\"\u{301}<&'"), "&quot;\u{301}&lt;&amp;&#39;")
    }

    /// The points and history rows are written in Swift (PointRows): byte for byte what the
    /// template they replace renders, hostile text included.
    func testPointRowsAreWhatTheirTemplateRendered() throws {
        let reference = [
            false: """
            {{#points}}<tr><td><a href="/points/{{id}}"><code>{{short}}</code></a></td><td>{{server}}</td><td><a href="/points/{{id}}">{{name}}</a></td><td>{{type}}</td><td>{{schedule}}</td>
            <td><span class="status {{statusClass}}">{{status}}</span> {{deletion}}</td><td>{{disk}}</td><td>{{added}}</td><td>{{time}}</td></tr>
            {{/points}}
            """,
            true: """
            {{#points}}<tr><td><a href="/points/{{id}}"><code>{{short}}</code></a></td><td>{{server}}</td><td>{{name}}</td>
            <td><span class="status {{statusClass}}">{{status}}</span></td><td>{{type}}</td><td>{{schedule}}</td><td>{{time}}</td><td>{{finished}}</td>
            <td>{{deletion}}</td><td>{{reason}}</td></tr>
            {{/points}}
            """,
        ]
        _ = try Pages() // registers ScalarHTML
        var library = MustacheLibrary()
        for (history, text) in reference {
            try library.register("{{% CONTENT_TYPE: \(ScalarHTML.name) }}" + text, named: "\(history)")
        }
        let hostile = ["<b>\"x\"</b> & 'y'", "\"\u{301}<\u{600}<", "", "日本 \u{1F600}"]
        var views: [PointView] = []
        for (n, text) in hostile.enumerated() {
            var object: [String: Any] = [
                "id": "\(n)ABCDEF0-1234" + text, "name": text + "n", "server": text + "s", "vault": "v", "type": "Full",
                "scheduleType": "Policy" + text, "status": (n == 1 ? "Error" : "Active") + text, "estimatedSize": 0,
                "diskBytes": 1 << (10 * n) + 51 * n, "addedBytes": Int64(n) * 1_234_567_890_123, "location": "l",
                "time": text + "t", "description": text, "tags": [String: String](), "disks": [Any](),
                "deletion": n == 1 ? "Soft deleted" : text,
            ]
            if n != 2 { object["error"] = text + "e" }
            if n != 3 { object["finishedAt"] = text + "f" }
            let json = try JSONSerialization.data(withJSONObject: object)
            views.append(try JSONDecoder().decode(PointView.self, from: json))
        }
        for history in [false, true] {
            let expected = library.render(["points": views.map(Console.pointRow)], withTemplate: "\(history)") ?? ""
            XCTAssertEqual(PointRows.html(views, history: history) + "\n", expected + "\n", "history: \(history)")
            XCTAssertFalse(PointRows.html(views, history: history).contains("<b>"))
        }
    }

    func testA405NamesTheMethodsOfAPathAndLoginsGoOnlyToThisConsole() {
        let table = RouteTable()
        table.add(.get, "/api/v1/points/:point")
        table.add(.post, "/api/v1/points/:point/delete")
        table.add(.get, "/api/v1/points")
        XCTAssertEqual(table.methods(for: "/api/v1/points/abcd"), ["GET", "HEAD"])
        XCTAssertEqual(table.methods(for: "/api/v1/points/abcd/delete"), ["POST"])
        XCTAssertEqual(table.methods(for: "/api/v1/nothing"), [])
        for next in ["//evil.example/x", "https://evil.example", "/\\evil", "points", "/a\nb", "/\t/evil.example", nil]
        {
            XCTAssertEqual(Console.localTarget(next), "/points", next ?? "none")
        }
        XCTAssertEqual(Console.localTarget("/history?server=web"), "/history?server=web")
    }
}
