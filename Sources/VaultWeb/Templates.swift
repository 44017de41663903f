/// The console's templates (swift-mustache: `{{x}}` is escaped for HTML, `{{{x}}}` only for
/// the page body the layout wraps), its stylesheet and its one script. Kept in the binary:
/// the release binaries ship without resource bundles, and nothing is fetched from elsewhere.
enum Templates {
    static let all: [(String, String)] = [
        ("layout", layout), ("error", error), ("login", login), ("vaults", vaults), ("servers", servers),
        ("points", points), ("history", history), ("jobs", jobs), ("point", point), ("files", files),
        ("backup", backup), ("delete", delete), ("filters", filters), ("pager", pager), ("restore", restore),
    ]

    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="csrf-token" content="{{csrf}}">
        <title>{{title}} · vaultfs</title>
        <link rel="stylesheet" href="/static/console.css">
        <script src="/static/console.js" defer></script>
        </head>
        <body>
        <header>
        <a class="brand" href="/points">vaultfs</a>
        <nav>{{#nav}}<a href="{{href}}"{{#current}} aria-current="page"{{/current}}>{{label}}</a>{{/nav}}</nav>
        {{#loggedIn}}<form method="post" action="/logout" class="logout"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit">Log out</button></form>{{/loggedIn}}
        </header>
        <main>
        {{{body}}}
        </main>
        <footer>{{repository}}</footer>
        </body>
        </html>

        """

    static let error = """
        <h1>{{status}}</h1>
        <p class="problem" id="problem">{{message}}</p>
        <p><a href="/points">Back to the points</a></p>
        """

    static let login = """
        <h1>Log in</h1>
        {{#failed}}<p class="problem" id="problem">That is not this console's token.</p>{{/failed}}
        <form method="post" action="/login" class="stacked">
        <input type="hidden" name="next" value="{{next}}">
        <label for="token">Token</label>
        <input type="password" id="token" name="token" autocomplete="current-password" required autofocus>
        <p class="hint">The token is in the file <code>vaultctl serve</code> named when it started
        (<code>/var/lib/vaultfs/web/token</code> for root).</p>
        <button type="submit" id="login">Log in</button>
        </form>
        """

    static let vaults = """
        <h1>Vaults</h1>
        {{#empty}}<p>No vaults yet: <code>vaultctl vault create NAME</code>.</p>{{/empty}}
        {{^empty}}
        <table>
        <thead><tr><th>Vault</th><th>Policy</th><th>Next slot</th><th>Servers</th></tr></thead>
        <tbody>
        {{#vaults}}<tr><td>{{name}}</td><td>{{policy}}</td><td>{{next}}</td>
        <td>{{#servers}}<a href="/points?server={{name}}">{{name}}</a> {{/servers}}</td></tr>
        {{/vaults}}
        </tbody>
        </table>
        {{/empty}}
        """

    static let servers = """
        <h1>Servers</h1>
        {{#empty}}<p>No servers yet: <code>vaultctl server add NAME --vault VAULT --disk root=/dev/...</code>.</p>{{/empty}}
        {{^empty}}
        <table>
        <thead><tr><th>Server</th><th>Vault</th><th>Disks</th><th>Last point</th><th>State</th><th></th></tr></thead>
        <tbody>
        {{#servers}}<tr><td><a href="/points?server={{name}}">{{name}}</a></td><td>{{vault}}</td><td>{{disks}}</td>
        {{#last}}<td><a href="/points/{{id}}">{{name}}</a> {{time}}</td><td><span class="status {{statusClass}}">{{status}}</span> {{deletion}}</td>{{/last}}
        {{^last}}<td>-</td><td>-</td>{{/last}}
        <td><a class="button" href="/servers/{{name}}/backup">Backup now</a></td></tr>
        {{/servers}}
        </tbody>
        </table>
        {{/empty}}
        """

    static let filters = """
        <form method="get" class="filters">
        {{#filters}}
        <label>Server <input name="server" value="{{server}}" size="10"></label>
        <label>Vault <input name="vault" value="{{vault}}" size="10"></label>
        {{/filters}}
        {{#choices}}<label>{{label}} <select name="{{name}}">{{#options}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{text}}</option>{{/options}}</select></label>
        {{/choices}}
        {{#filters}}
        <label>Tag <input name="tag" value="{{tag}}" size="10" placeholder="key=value"></label>
        <label>Since <input name="since" value="{{since}}" size="12" placeholder="7d or 2026-12-01"></label>
        <label>Before <input name="before" value="{{before}}" size="12"></label>
        {{/filters}}
        """

    static let pager = """
        <p class="pager">{{first}}–{{last}} of {{total}}
        {{#previous}}<a href="{{previous}}" rel="prev">Newer</a>{{/previous}}
        {{#next}}<a href="{{next}}" rel="next">Older</a>{{/next}}</p>
        """

    static let points = """
        <h1>Points</h1>
        {{> filters}}
        <label><input type="checkbox" name="deleted" value="true"{{#deletedChecked}} checked{{/deletedChecked}}> soft-deleted too</label>
        <button type="submit">Filter</button>
        </form>
        {{> pager}}
        {{#empty}}<p>No points match.</p>{{/empty}}
        {{^empty}}
        <table id="points">
        <thead><tr><th>ID</th><th>Server</th><th>Name</th><th>Type</th><th>Schedule</th><th>Status</th><th>Disk</th><th>Added</th><th>Time</th></tr></thead>
        <tbody>
        {{! Rows written and escaped by PointRows.html: }}
        {{{rows}}}
        </tbody>
        </table>
        {{/empty}}
        """

    static let history = """
        <h1>History</h1>
        {{> filters}}
        <button type="submit">Filter</button>
        </form>
        {{> pager}}
        {{#empty}}<p>No attempts match.</p>{{/empty}}
        {{^empty}}
        <table id="history">
        <thead><tr><th>ID</th><th>Server</th><th>Name</th><th>Status</th><th>Type</th><th>Schedule</th><th>Start</th><th>End</th><th>Deletion</th><th>Reason</th></tr></thead>
        <tbody>
        {{! Rows written and escaped by PointRows.html: }}
        {{{rows}}}
        </tbody>
        </table>
        {{/empty}}
        """

    static let jobs = """
        <h1>Jobs</h1>
        <p class="hint" id="live">Backups running now. This page follows them live with JavaScript; without it, reload.</p>
        <p id="nojobs"{{^empty}} hidden{{/empty}}>No backup is running.</p>
        <table id="jobs"{{#empty}} hidden{{/empty}}>
        <thead><tr><th>Server</th><th>Name</th><th>Type</th><th>Progress</th><th>Started</th></tr></thead>
        <tbody>
        {{#jobs}}<tr data-point="{{id}}"><td>{{server}}</td><td><a href="/points/{{id}}">{{name}}</a></td><td>{{type}}</td>
        <td><progress max="100" value="{{percent}}">{{percent}}%</progress> <span class="percent">{{percent}}%</span> ({{done}} of {{total}})</td><td>{{time}}</td></tr>
        {{/jobs}}
        </tbody>
        </table>
        <div id="finished"></div>
        {{#hasRestores}}
        <h2>Instant restores</h2>
        <table id="restores">
        <thead><tr><th>Restore</th><th>Point</th><th>Disk</th><th>Target</th><th>Filled</th><th>State</th><th></th></tr></thead>
        <tbody>
        {{#restores}}<tr data-restore="{{id}}"><td><code>{{short}}</code></td><td><a href="/points/{{point}}">{{server}}/{{name}}</a></td><td>{{disk}}</td><td><code>{{target}}</code></td>
        <td><progress max="100" value="{{percent}}">{{percent}}%</progress> {{percent}}% of {{size}}{{#eta}}, {{eta}} left{{/eta}}</td><td>{{state}}{{#error}}: {{error}}{{/error}}</td>
        <td>{{#complete}}<form method="post" action="/restores/{{id}}/finish" data-confirm="Finish: the target alone holds the disk, and the image goes. Stop what uses the image first."><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit" class="finish">Finish</button></form>{{/complete}}
        <form method="post" action="/restores/{{id}}/cancel" data-confirm="Cancel: the image goes, and the target stays as filled so far."><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit" class="danger">Cancel</button></form></td></tr>
        {{/restores}}
        </tbody>
        </table>
        {{/hasRestores}}
        """

    static let point = """
        <h1>Point {{name}}</h1>
        <dl class="facts">
        <dt>ID</dt><dd><code id="point-id">{{id}}</code></dd>
        <dt>Server</dt><dd><a href="/points?server={{server}}">{{server}}</a></dd>
        <dt>Vault</dt><dd>{{vault}}</dd>
        <dt>Type</dt><dd>{{type}}, {{schedule}}</dd>
        <dt>Status</dt><dd><span class="status {{statusClass}}" id="status">{{status}}</span> <span id="deletion">{{deletion}}</span> {{reason}}</dd>
        <dt>Time</dt><dd>{{time}} to {{finished}}</dd>
        <dt>Size</dt><dd>{{disk}} of disks, {{added}} stored anew</dd>
        <dt>Description</dt><dd>{{description}}</dd>
        <dt>Tags</dt><dd>{{#tags}}<span class="tag">{{key}}={{value}}</span> {{/tags}}</dd>
        </dl>
        <div class="actions">
        {{#deleted}}<form method="post" action="/points/{{id}}/undelete"><input type="hidden" name="csrf" value="{{csrf}}"><button type="submit" id="undelete">Undelete</button></form>{{/deleted}}
        {{^deleted}}<a class="button danger" id="delete" href="/points/{{id}}/delete">Delete…</a>{{/deleted}}
        </div>
        <h2>Disks</h2>
        <table id="disks">
        <thead><tr><th>Disk</th><th>Size</th><th>Stored</th><th>Changed</th><th></th></tr></thead>
        <tbody>
        {{#disks}}<tr><td>{{name}}</td><td>{{size}}</td><td>{{stored}}</td><td>{{changed}}</td><td>{{#readable}}<a href="{{image}}" download>Download image</a>{{/readable}}{{#restore}} · <a href="{{restore}}">Restore onto {{target}}…</a>{{/restore}}</td></tr>
        {{/disks}}
        </tbody>
        </table>
        {{#hasVolumes}}
        <h2>Files</h2>
        <table id="volumes">
        <thead><tr><th>Filesystem</th><th>Disk</th><th>Type</th><th>Size</th><th></th></tr></thead>
        <tbody>
        {{#volumes}}<tr><td>{{name}}</td><td>{{disk}}</td><td>{{filesystem}}</td><td>{{size}}</td>
        <td>{{#shown}}<a href="{{href}}">Browse files</a>{{/shown}}{{^shown}}{{reason}}{{/shown}}</td></tr>
        {{/volumes}}
        </tbody>
        </table>
        {{/hasVolumes}}
        <h2>Chain</h2>
        <ol class="chain">
        {{#chain}}<li><a href="/points/{{id}}">{{name}}</a> ({{type}}, {{time}})</li>
        {{/chain}}
        </ol>
        """

    static let files = """
        <h1>Files</h1>
        <p class="crumbs"><a href="/points/{{point}}">Point <code>{{short}}</code></a> /
        {{#crumbs}}<a href="{{href}}">{{name}}</a> / {{/crumbs}}</p>
        {{#isFolder}}<p><a class="button" id="tar" href="{{tar}}" download>Download this folder as tar</a></p>{{/isFolder}}
        {{#empty}}<p>This folder is empty.</p>{{/empty}}
        {{#paged}}<p class="pager">{{shown}}
        {{#previous}}<a href="{{previous}}" rel="prev">Previous</a>{{/previous}}
        {{#next}}<a href="{{next}}" rel="next">Next</a>{{/next}}</p>{{/paged}}
        {{^empty}}
        <table id="files">
        <thead><tr><th>Name</th><th>Kind</th><th>Mode</th><th>Size</th><th>Modified</th><th></th></tr></thead>
        <tbody>
        {{#entries}}<tr><td>{{#isFolder}}<a href="{{browse}}">{{name}}/</a>{{/isFolder}}{{^isFolder}}{{name}}{{/isFolder}}{{#target}} → {{target}}{{/target}}</td>
        <td>{{kind}}</td><td><code>{{mode}}</code></td><td>{{size}}</td><td>{{modified}}</td>
        <td>{{#isFile}}<a href="{{download}}" download>Download</a>{{/isFile}}</td></tr>
        {{/entries}}
        </tbody>
        </table>
        {{/empty}}
        """

    static let backup = """
        <h1>Back up {{server}} now</h1>
        <form method="post" action="/servers/{{server}}/backup" class="stacked" data-confirm="Back up {{server}} now?">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <label for="name">Name (empty: manualbk_…)</label>
        <input id="name" name="name" maxlength="64">
        <label for="description">Description</label>
        <input id="description" name="description" maxlength="255">
        <label for="tags">Tags, one KEY=VALUE a line (up to 10)</label>
        <textarea id="tags" name="tags" rows="3"></textarea>
        <button type="submit" id="start">Back up now</button>
        </form>
        """

    static let delete = """
        <h1>Delete point {{name}}?</h1>
        <p>Point <code>{{id}}</code> of {{server}}, {{type}}, {{time}}. It is soft-deleted: it can be
        undeleted until it is purged. A point that depends on it refuses the deletion.</p>
        <form method="post" action="/points/{{id}}/delete">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <button type="submit" class="danger" id="confirm">Delete</button>
        <a href="/points/{{id}}">Cancel</a>
        </form>
        """

    static let restore = """
        <h1>Restore {{server}}/{{name}} disk {{disk}}?</h1>
        <p>Point <code>{{id}}</code>, {{type}}, {{time}}, onto <code>{{target}}</code>: the path this host backs
        the disk up from. What the target holds now is replaced. A mounted or busy device, or a file
        a running VM or a loop device uses, is refused before anything is written.</p>
        <form method="post" action="/points/{{id}}/restore" class="stacked">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <input type="hidden" name="disk" value="{{disk}}">
        <label><input type="checkbox" name="instant" value="true" checked> Instant: usable at once through a
        writable image in the running mount, filled behind (needs a vaultfs mount of this repository)</label>
        <button type="submit" class="danger" id="confirm-restore">Restore onto {{target}}</button>
        <a href="/points/{{id}}">Cancel</a>
        </form>
        """

    static let css = """
        :root { --ink: #1d2433; --muted: #5b6475; --line: #d8dce4; --accent: #1f5fbf; --bad: #b3261e; --good: #1b7f3b; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--ink); background: #f6f7f9; }
        header { display: flex; align-items: center; gap: 1.5rem; padding: .6rem 1.5rem; background: #17202e; }
        header a { color: #dfe6f2; text-decoration: none; }
        header .brand { font-weight: 700; font-size: 1.1rem; }
        header nav a { margin-right: 1rem; padding: .2rem 0; }
        header nav a[aria-current=page] { border-bottom: 2px solid #7fb0ff; color: #fff; }
        header .logout { margin-left: auto; }
        main { padding: 1rem 1.5rem 3rem; max-width: 1200px; }
        footer { padding: 1rem 1.5rem; color: var(--muted); font-size: .85rem; }
        h1 { font-size: 1.4rem; margin: .6rem 0 1rem; }
        h2 { font-size: 1.1rem; margin-top: 1.6rem; }
        table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
        th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { background: #eef1f5; font-weight: 600; font-size: .9rem; }
        a { color: var(--accent); }
        code { font-size: .9em; }
        .status { padding: 0 .4rem; border-radius: 3px; background: #e6e9ef; }
        .status.active { background: #dcf2e3; color: var(--good); }
        .status.error { background: #fbe3e1; color: var(--bad); }
        .status.creating { background: #e1ecfb; color: var(--accent); }
        .problem { color: var(--bad); font-weight: 600; }
        .hint { color: var(--muted); }
        .filters { display: flex; flex-wrap: wrap; gap: .5rem 1rem; align-items: end; margin-bottom: .5rem; }
        .filters label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); }
        .stacked { display: flex; flex-direction: column; gap: .4rem; max-width: 28rem; }
        button, .button { display: inline-block; padding: .35rem .9rem; border: 1px solid var(--accent); border-radius: 4px; background: var(--accent); color: #fff; font: inherit; cursor: pointer; text-decoration: none; }
        .danger { background: var(--bad); border-color: var(--bad); color: #fff; }
        .logout button { background: transparent; border-color: #7d8797; }
        .facts { display: grid; grid-template-columns: 9rem 1fr; gap: .2rem 1rem; }
        .facts dt { color: var(--muted); }
        .facts dd { margin: 0; }
        .tag { background: #eef1f5; padding: 0 .3rem; border-radius: 3px; }
        .actions { margin: 1rem 0; display: flex; gap: .6rem; }
        .pager a { margin-left: 1rem; }
        progress { width: 12rem; }

        """

    /// Live progress on the jobs page (Server-Sent Events) and a confirmation before a form
    /// with `data-confirm` is sent. No inline script anywhere: the policy forbids it.
    static let script = """
        "use strict";
        document.addEventListener("submit", function (event) {
          var form = event.target;
          var question = form.getAttribute("data-confirm");
          if (question && !window.confirm(question)) { event.preventDefault(); }
        });
        function text(value) { return document.createTextNode(value); }
        function size(bytes) {
          var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
          while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
          return (i === 0 ? bytes : bytes.toFixed(1)) + " " + units[i];
        }
        var table = document.getElementById("jobs");
        if (table && window.EventSource) {
          var body = table.querySelector("tbody");
          var seen = {};
          Array.prototype.forEach.call(body.querySelectorAll("tr[data-point]"), function (row) { seen[row.getAttribute("data-point")] = true; });
          var source = new EventSource("/api/v1/jobs/events");
          source.addEventListener("jobs", function (event) {
            var jobs = JSON.parse(event.data);
            var running = {};
            jobs.forEach(function (job) {
              running[job.id] = true;
              seen[job.id] = true;
              var row = body.querySelector("tr[data-point='" + job.id + "']");
              if (!row) {
                row = document.createElement("tr");
                row.setAttribute("data-point", job.id);
                var link = document.createElement("a");
                link.href = "/points/" + job.id;
                link.appendChild(text(job.name));
                var cells = [text(job.server), link, text(job.type), null, text(job.time)];
                cells.forEach(function (content) {
                  var cell = document.createElement("td");
                  if (content) { cell.appendChild(content); }
                  row.appendChild(cell);
                });
                var bar = document.createElement("progress");
                bar.max = 100;
                var label = document.createElement("span");
                label.className = "percent";
                row.children[3].appendChild(bar);
                row.children[3].appendChild(text(" "));
                row.children[3].appendChild(label);
                row.children[3].appendChild(document.createElement("span"));
                body.appendChild(row);
              }
              var percent = job.progress ? job.progress.percent : 0;
              row.querySelector("progress").value = percent;
              row.querySelector(".percent").textContent = percent + "%";
              if (job.progress) {
                row.children[3].lastChild.textContent = " (" + size(job.progress.doneBytes) + " of " + size(job.progress.totalBytes) + ")";
              }
            });
            Array.prototype.forEach.call(body.querySelectorAll("tr[data-point]"), function (row) {
              var id = row.getAttribute("data-point");
              if (!running[id] && !row.classList.contains("ended")) {
                row.classList.add("ended");
                row.querySelector("progress").value = 100;
                row.querySelector(".percent").textContent = "ended";
                fetch("/api/v1/points/" + id, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (point) {
                  row.querySelector(".percent").textContent = point.status === "Active" ? "100% done" : point.status + (point.error ? ": " + point.error : "");
                });
              }
            });
            table.hidden = body.children.length === 0;
            document.getElementById("nojobs").hidden = body.children.length !== 0;
          });
        }

        """
}
