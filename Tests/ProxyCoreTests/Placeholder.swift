import Testing

@Test func placeholder_ProxyCoreTests() {}
