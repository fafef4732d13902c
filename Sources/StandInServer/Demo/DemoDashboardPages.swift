/// The demo dashboard's pages and assets. It behaves like the single-page apps people open through a proxy
/// (Grafana, Prometheus, Argo CD): absolute links in its HTML, and a script that builds URLs itself — `fetch('/api/data')`,
/// `new WebSocket('ws://' + location.host + '/ws')` — sets and reads cookies, and probes `/api/v1/namespaces` to show
/// whether the page could reach the cluster API. Every result is written into the page (`#fetch-result`,
/// `#cookie-result`, `#ws-result`, `#api-probe-result`, then `#done`), so a person, or a headless browser's DOM,
/// sees what worked.
enum DemoDashboardPages {
    static func index(host: String) -> String {
        page(title: "Demo dashboard", body: """
            <h1><img id="logo" src="/static/logo.svg" alt="" width="28" height="28"> Demo dashboard</h1>
            <p class="note">A small web app served by <code>standin-apiserver --demo</code> on loopback, standing in for
            Grafana or Prometheus. This page was requested with <code>Host: \(escape(host))</code>.</p>
            <nav>
              <a id="about-link" href="/about">About</a>
              <a id="login-link" href="/login">Sign in</a>
              <a id="home-link" href="/home">Home</a>
            </nav>
            <form id="search-form" action="/search" method="get">
              <input name="q" placeholder="Search" aria-label="Search">
              <button id="search-button" formaction="/search">Search</button>
            </form>
            <table>
              <tr><th>Script <code>/static/app.js</code></th><td><div id="script-result">did not run</div></td></tr>
              <tr><th><code>fetch('/api/data')</code></th><td><div id="fetch-result">pending</div></td></tr>
              <tr><th>Cookies</th><td><div id="cookie-result">pending</div></td></tr>
              <tr><th>WebSocket <code>/ws</code></th><td><div id="ws-result">pending</div></td></tr>
              <tr><th><code>fetch('/api/v1/namespaces')</code></th><td><div id="api-probe-result">pending</div></td></tr>
            </table>
            <div id="done"></div>
            """)
    }

    static let about = page(title: "About the demo dashboard", body: """
        <h1>About</h1>
        <div id="about">The demo dashboard of proxyd's stand-in apiserver.</div>
        <p><a id="back-link" href="/">Back to the dashboard</a></p>
        """)

    static func home(user: String?) -> String {
        page(title: "Demo dashboard home", body: """
            <h1>Home</h1>
            <div id="login-result">\(user.map { "signed in as " + escape($0) } ?? "not signed in")</div>
            <p><a id="back-link" href="/">Back to the dashboard</a></p>
            """)
    }

    static func search(query: String) -> String {
        page(title: "Search", body: """
            <h1>Search</h1>
            <div id="search-result">no results for \(escape(query))</div>
            <p><a href="/">Back to the dashboard</a></p>
            """)
    }

    private static func page(title: String, body: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(escape(title))</title>
        <link rel="stylesheet" href="/static/app.css">
        <script src="/static/app.js" defer></script>
        </head>
        <body>
        \(body)
        </body>
        </html>

        """
    }

    static let css = """
        body { font-family: system-ui, sans-serif; margin: 1.5rem; max-width: 48rem; color: #1d2733; }
        h1 img { vertical-align: middle; }
        nav a { margin-right: 1rem; }
        .note { color: #52606d; }
        table { border-collapse: collapse; margin-top: 1rem; width: 100%; }
        th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #d9e2ec; vertical-align: top; }
        th { font-weight: 600; width: 40%; }
        .ok { color: #1f7a3a; }
        .failed { color: #b42318; }
        code { overflow-wrap: anywhere; }

        """

    static let logo = """
        <svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 28 28"><rect width="28" height="28" rx="6" fill="#326ce5"/>\
        <path d="M6 19l5-6 4 4 7-9" stroke="#fff" stroke-width="2.5" fill="none"/></svg>

        """

    /// Runs on every page; only the dashboard's own page has the result fields.
    static let script = """
        // The demo dashboard's script. Like many single-page apps it builds URLs itself from absolute paths, which
        // no HTML rewriting can reach: they work when the app has an origin of its own, and break under a path prefix.
        (function () {
          'use strict';
          if (!document.getElementById('fetch-result')) { return; }
          function show(id, text, ok) {
            var element = document.getElementById(id);
            element.textContent = text;
            element.className = ok ? 'ok' : 'failed';
          }
          show('script-result', 'ran at ' + location.host, true);
          document.cookie = 'dashboard-theme=dark; path=/; SameSite=Lax';

          var data = fetch('/api/data', { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
            .then(function (response) {
              if (!response.ok) { throw new Error('HTTP ' + response.status); }
              return response.json();
            })
            .then(function (json) { show('fetch-result', json.message, true); return json; })
            .catch(function (error) { show('fetch-result', 'failed: ' + error.message, false); return null; });

          var cookies = data.then(function (json) {
            var own = document.cookie;
            var received = json ? json.cookies : '';
            var ok = own.indexOf('dashboard-theme=dark') >= 0 && own.indexOf('dashboard-session=') >= 0 &&
              received.indexOf('dashboard-theme=dark') >= 0 && received.indexOf('dashboard-session=') >= 0;
            show('cookie-result', 'document.cookie: ' + (own || '(none)') + ' | the server received: ' +
              (json ? (received || '(none)') : '(no answer from /api/data)'), ok);
          });

          var webSocket = new Promise(function (resolve) {
            var expected = 'ping ' + Math.random().toString(36).slice(2, 10);
            var finished = false;
            function finish(text, ok) {
              if (finished) { return; }
              finished = true;
              show('ws-result', text, ok);
              resolve();
            }
            var socket;
            try {
              socket = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
            } catch (error) {
              finish('failed: ' + error.message, false);
              return;
            }
            socket.onopen = function () { socket.send(expected); };
            socket.onmessage = function (event) {
              finish('echo: ' + event.data, event.data === expected);
              socket.close();
            };
            socket.onerror = function () { finish('failed: the WebSocket to /ws did not open', false); };
            socket.onclose = function (event) { finish('failed: closed with code ' + event.code, false); };
            setTimeout(function () { finish('failed: no echo within 10 s', false); }, 10000);
          });

          var probe = fetch('/api/v1/namespaces', { credentials: 'same-origin' })
            .then(function (response) {
              return response.text().then(function (body) {
                var kind = '';
                try { kind = JSON.parse(body).kind || ''; } catch (error) { kind = ''; }
                var exposed = response.ok && kind === 'NamespaceList';
                show('api-probe-result', 'HTTP ' + response.status + (kind ? ' ' + kind : '') + (exposed
                  ? ': this page can read the cluster API with your credentials'
                  : ': the cluster API is out of this page\\'s reach'), !exposed);
              });
            })
            .catch(function (error) { show('api-probe-result', 'failed: ' + error.message, true); });

          Promise.all([cookies, webSocket, probe]).then(function () {
            document.getElementById('done').textContent = 'done';
          });
        })();

        """

    static func escape(_ text: String) -> String {
        HTMLRewriter.escaped(text)
    }
}
