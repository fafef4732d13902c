import Testing

@testable import ProxyCore

/// Which requests end on the client's EOF (watches and followed logs), as pure values.
@Suite struct LongRunningRequestTests {
    @Test(arguments: [
        ("/api/v1/namespaces/default/pods?watch=1", true),
        ("/api/v1/pods?watch=true&resourceVersion=5", true),
        ("/api/v1/pods?labelSelector=a&watch", true),  // the apiserver reads a bare parameter as true
        ("/api/v1/pods?watch=TRUE", true),
        ("/api/v1/watch/namespaces/default/pods", true),
        ("/apis/apps/v1/watch/deployments", true),
        ("/prefix/api/v1/watch/pods", true),  // behind --append-server-path
        ("/api/v1/namespaces/default/pods/web/log?follow=true&container=c", true),
        ("/api/v1/pods?watch=false", false),
        ("/api/v1/pods?watch=0", false),
        ("/api/v1/pods?watch=False", false),
        ("/api/v1/namespaces/default/pods/web/log?follow=false", false),
        ("/api/v1/namespaces/default/pods/web/log", false),
        ("/api/v1/namespaces/watch/pods", false),  // a namespace called "watch"
        ("/apis/watch/v1/things", false),  // a group called "watch"
        ("/api/v1/pods?rewatch=1&follower=1", false),
        ("/api/v1/pods", false),
        ("/version", false),
        ("", false),
    ])
    func classification(target: String, expected: Bool) {
        #expect(LongRunningRequest.isQuietByDesign(target: target) == expected, "\(target)")
    }
}
