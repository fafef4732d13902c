import StandInServer
import Testing

// The stand-in's copy of the apiserver's service-proxy rewriting (k8s.io/apimachinery pkg/util/proxy transport.go):
// which URLs change, into what, and which tags and attributes are looked at.

private let rewriter = ProxyURLRewriter(
    pathPrepend: "/api/v1/namespaces/demo/services/dashboard/proxy",
    backendHost: "127.0.0.1:41000",
    requestHost: "127.0.0.1:6443")
private let prefix = "/api/v1/namespaces/demo/services/dashboard/proxy"

@Suite("HTMLRewriter")
struct HTMLRewriterTests {
    @Test(arguments: [
        // Absolute paths get the proxy prefix; query and fragment stay.
        ("/about", prefix + "/about"),
        ("/", prefix + "/"),
        ("/static/app.js?v=3#x", prefix + "/static/app.js?v=3#x"),
        ("/a/", prefix + "/a/"),
        // path.Join cleans: doubled slashes and dot segments (even out of the prefix, as Go does).
        ("/static//app.js", prefix + "/static/app.js"),
        ("/x/./y/../z", prefix + "/x/z"),
        ("/../../x", "/api/v1/namespaces/demo/services/x"),
        // An absolute URL at the backend's own address becomes a path.
        ("http://127.0.0.1:41000/about", prefix + "/about"),
        ("//127.0.0.1:41000/about", prefix + "/about"),
        // An absolute URL at the Host the apiserver was asked for keeps scheme and host.
        ("https://127.0.0.1:6443/about", "https://127.0.0.1:6443" + prefix + "/about"),
        // Already prefixed: unchanged (but the backend's own host is still dropped).
        (prefix + "/about", prefix + "/about"),
        ("http://127.0.0.1:41000" + prefix + "/x", prefix + "/x"),
        // Relative references, other hosts and opaque URLs: unchanged.
        ("about", "about"),
        ("./about", "./about"),
        ("../up", "../up"),
        ("?q=1", "?q=1"),
        ("#top", "#top"),
        ("", ""),
        ("https://example.com/x", "https://example.com/x"),
        ("//cdn.example.com/lib.js", "//cdn.example.com/lib.js"),
        ("mailto:ops@example.com", "mailto:ops@example.com"),
        ("javascript:void(0)", "javascript:void(0)"),
        ("data:image/png;base64,AAAA", "data:image/png;base64,AAAA"),
        // Values Go's url.Parse refuses are left alone.
        ("/bad%zzescape", "/bad%zzescape"),
        ("1a:b/c", "1a:b/c"),
    ])
    func urlRewriting(input: String, expected: String) {
        #expect(rewriter.rewrite(input) == expected)
    }

    /// Every tag and attribute of the apiserver's table is rewritten.
    @Test func everyTableEntryIsRewritten() {
        #expect(HTMLRewriter.urlAttributes.count == 25)
        for (tag, attributes) in HTMLRewriter.urlAttributes {
            for attribute in attributes {
                let html = "<\(tag) \(attribute)=\"/target\">"
                let out = rewrite(html)
                #expect(out == "<\(tag) \(attribute)=\"\(prefix)/target\">", "\(tag) \(attribute)")
            }
        }
    }

    @Test(arguments: [
        // Attributes outside the table, and table attributes on other tags, stay.
        ("<a title=\"/x\" href=\"/y\">", "<a title=\"/x\" href=\"\(prefix)/y\">"),
        ("<div src=\"/x\" href=\"/y\"></div>", "<div src=\"/x\" href=\"/y\"></div>"),
        ("<img srcset=\"/a.png 2x\" src=\"/b.png\">", "<img srcset=\"/a.png 2x\" src=\"\(prefix)/b.png\">"),
        // Quoting styles, case, spacing, self-closing.
        ("<A HREF='/x'>", "<A HREF=\"\(prefix)/x\">"),
        ("<a href=/x>", "<a href=\"\(prefix)/x\">"),
        ("<a  href = \"/x\" >", "<a  href = \"\(prefix)/x\" >"),
        ("<img src=\"/x.png\"/>", "<img src=\"\(prefix)/x.png\"/>"),
        ("<input type=image src=/i.png formaction=/go>", "<input type=image src=\"\(prefix)/i.png\" formaction=\"\(prefix)/go\">"),
        // Character references are decoded before, and escaped after, rewriting.
        ("<a href=\"/s?a=1&amp;b=2\">", "<a href=\"\(prefix)/s?a=1&amp;b=2\">"),
        // Unchanged values keep their bytes exactly.
        ("<a href='about' class=x>", "<a href='about' class=x>"),
        // Comments, doctypes and end tags are copied; raw text is not parsed as markup.
        ("<!DOCTYPE html><!-- <a href=\"/x\"> --></a>", "<!DOCTYPE html><!-- <a href=\"/x\"> --></a>"),
        ("<script>var s = '<a href=\"/x\">';</script><a href=\"/y\">",
         "<script>var s = '<a href=\"/x\">';</script><a href=\"\(prefix)/y\">"),
        ("<script src=\"/app.js\"></script>", "<script src=\"\(prefix)/app.js\"></script>"),
        ("<style>a[href=\"/x\"]{}</style>", "<style>a[href=\"/x\"]{}</style>"),
        ("<textarea><img src=\"/x\"></textarea>", "<textarea><img src=\"/x\"></textarea>"),
        // CSS url() and script-built URLs are out of the apiserver's reach.
        ("<div style=\"background:url(/bg.png)\"></div>", "<div style=\"background:url(/bg.png)\"></div>"),
        ("<script>fetch('/api/data')</script>", "<script>fetch('/api/data')</script>"),
        // Text and a stray `<` pass through; truncated input does not trap.
        ("1 < 2 and <a href=\"/x\">x</a>", "1 < 2 and <a href=\"\(prefix)/x\">x</a>"),
        ("<a href=\"/x", "<a href=\"/x"),
        ("<a href=", "<a href="),
        ("<", "<"),
    ])
    func documents(input: String, expected: String) {
        #expect(rewrite(input) == expected)
    }

    @Test func nonASCIIBytesPassThrough() {
        let html = "<p>Grüße — 数据</p><a href=\"/ü\">"
        #expect(rewrite(html) == "<p>Grüße — 数据</p><a href=\"\(prefix)/ü\">")
    }

    private func rewrite(_ html: String) -> String {
        String(decoding: HTMLRewriter.rewrite(Array(html.utf8), rewriter.rewrite), as: UTF8.self)
    }
}
