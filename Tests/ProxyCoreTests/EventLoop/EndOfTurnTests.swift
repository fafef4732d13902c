import Testing
@testable import ProxyCore

/// `EventLoop.turn` and `atEndOfTurn`: how connections gather a turn's writes into one system call without a
/// queued block.
@Suite struct EndOfTurnTests {
    /// Records what ran, in order; registers itself again once if asked to (work added by work).
    final class Work: EndOfTurnWork, @unchecked Sendable {
        let name: String
        let log: Recorder<String>
        var again: (EventLoop, Work)?
        init(_ name: String, _ log: Recorder<String>) {
            self.name = name
            self.log = log
        }
        func endOfTurn() {
            log.append(name)
            if let (loop, next) = again {
                again = nil
                loop.atEndOfTurn(next)
            }
        }
    }

    @Test func workRunsWhenTheTurnEndsBeforeAnyQueuedBlock() async {
        let loop = EventLoop(label: "test.turn")
        let log = Recorder<String>()
        await TestIO.onLoop(loop) {
            loop.turn {
                loop.execute { log.append("queued block") }
                loop.atEndOfTurn(Work("first", log))
                loop.turn {           // a nested turn ends inside the outer one: nothing runs yet
                    loop.atEndOfTurn(Work("nested", log))
                }
                log.append("turn body")
            }
            log.append("after turn")
        }
        #expect(await TestIO.eventually { log.values.count == 5 })
        #expect(log.values == ["turn body", "first", "nested", "after turn", "queued block"])
    }

    @Test func workAddedByWorkRunsInTheSamePass() async {
        let loop = EventLoop(label: "test.turn.chain")
        let log = Recorder<String>()
        await TestIO.onLoop(loop) {
            let first = Work("first", log)
            first.again = (loop, Work("second", log))
            loop.turn { loop.atEndOfTurn(first) }
            log.append("after turn")
        }
        #expect(log.values == ["first", "second", "after turn"])
    }

    @Test func outsideATurnAllWorkRunsInOneQueuedBlock() async {
        let loop = EventLoop(label: "test.turn.outside")
        let log = Recorder<String>()
        await TestIO.onLoop(loop) {
            loop.atEndOfTurn(Work("a", log))
            loop.execute { log.append("queued after a") }
            loop.atEndOfTurn(Work("b", log))   // joins the block already queued for a
            log.append("caller done")
        }
        #expect(await TestIO.eventually { log.values.count == 4 })
        #expect(log.values == ["caller done", "a", "b", "queued after a"])
        // The loop is usable again afterwards: a new call queues a new block.
        await TestIO.onLoop(loop) { loop.atEndOfTurn(Work("c", log)) }
        #expect(await TestIO.eventually { log.values.count == 5 })
        #expect(log.values.last == "c")
    }
}
