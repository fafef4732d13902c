@testable import ProxyCore
import Testing

@Suite("Stream window sizing")
struct StreamWindowTests {
    @Test func startsAt64KiB() {
        #expect(StreamWindow().size == 64 * 1024)
        #expect(StreamWindow.initial == 65_536)
    }

    @Test func doublesAfterEach256KiBAFastClientTakesUpTo2MiB() {
        #expect(StreamWindow.growthBytes == 256 * 1024)
        var window = StreamWindow()
        var sizes: [Int32] = []
        for _ in 0..<(8 * 16) {   // 8 MiB in 64 KiB pieces
            if let size = window.consumed(64 * 1024, clientBackedUp: false, clientKeepingUp: { true }) {
                sizes.append(size)
            }
        }
        let expected: [Int32] = [128 << 10, 256 << 10, 512 << 10, 1 << 20, 2 << 20]
        #expect(sizes == expected)
        #expect(window.size == StreamWindow.maximum)
    }

    @Test func aClientWithMuchUnsentInTheKernelDoesNotGrowIt() {
        var window = StreamWindow()
        var asked = 0
        for _ in 0..<16 {   // 1 MiB in 64 KiB pieces
            let resized = window.consumed(64 * 1024, clientBackedUp: false) {
                asked += 1
                return false
            }
            #expect(resized == nil)
        }
        #expect(window.size == StreamWindow.initial)
        #expect(asked == 4)   // asked once per 256 KiB taken, not for every piece
    }

    @Test func backingUpShrinksItToTheInitialSizeAndStartsTheCountAgain() {
        var window = StreamWindow()
        for _ in 0..<12 { _ = window.consumed(64 * 1024, clientBackedUp: false, clientKeepingUp: { true }) }
        let halfMiB: Int32 = 512 << 10
        #expect(window.size == halfMiB)
        #expect(window.consumed(1000, clientBackedUp: true, clientKeepingUp: { true }) == StreamWindow.initial)
        #expect(window.consumed(1000, clientBackedUp: true, clientKeepingUp: { true }) == nil)   // already initial
        // Growth needs 256 KiB again after backing up.
        var grew: Int32?
        for _ in 0..<3 { grew = window.consumed(64 * 1024, clientBackedUp: false, clientKeepingUp: { true }) ?? grew }
        #expect(grew == nil)
        let doubled: Int32 = 128 << 10
        #expect(window.consumed(64 * 1024, clientBackedUp: false, clientKeepingUp: { true }) == doubled)
    }
}
