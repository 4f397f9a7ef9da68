import DiffusionModels
import Foundation
import TestSupport
import Testing

/// CLIP tokenisation against transformers' slow CLIPTokenizer with ftfy
/// (Tests/Fixtures/tokenizer, written by tools/reference/fixtures_tokenizer.py).
@Suite struct TokenizerTests {
    struct Case: Decodable { let text: String; let ids: [Int] }

    static func cases(_ name: String) throws -> [Case] {
        let text = try String(contentsOfFile: Fixtures.path("tokenizer/" + name), encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(Case.self, from: Data($0.utf8)) }
    }

    @Test func astronaut() throws {
        let ids = try CLIPTokenizer.bundled().encode("a photo of an astronaut riding a horse on mars").ids
        #expect(Array(ids.prefix(12)) == [49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407])
        #expect(ids.count == 77 && ids[12...].allSatisfy { $0 == 49407 })
    }

    @Test func goldenPrompts() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        let cases = try TokenizerTests.cases("prompts.jsonl")
        #expect(cases.count >= 200)
        var failures: [String] = []
        for c in cases where tokenizer.encode(c.text).ids != c.ids {
            failures.append(c.text.debugDescription)
        }
        print("tokenizer: \(cases.count - failures.count) of \(cases.count) prompts give the reference ids")
        #expect(failures.isEmpty, "\(failures.count) prompts differ: \(failures.prefix(10).joined(separator: " | "))")
    }

    @Test(arguments: ["tiny-vocab", "tiny-vocab-json"])
    func folderVocabulary(folder: String) throws {
        let tokenizer = try CLIPTokenizer(folder: Fixtures.path("tokenizer/" + folder))
        for c in try TokenizerTests.cases("tiny-vocab-prompts.jsonl") {
            #expect(tokenizer.encode(c.text).ids == c.ids, "\(c.text.debugDescription)")
        }
    }

    @Test func truncationKeepsEndTokenAndReportsTheCut() throws {
        let tokenizer = try CLIPTokenizer.bundled()
        let long = Array(repeating: "cat", count: 80).joined(separator: " ") + " dog"
        let encoding = tokenizer.encode(long)
        #expect(encoding.ids.count == 77 && encoding.ids.last == 49407)
        #expect(encoding.droppedTokenCount == 6)
        #expect(encoding.droppedText.hasSuffix("dog"))
        #expect(tokenizer.encode("cat dog").droppedTokenCount == 0)
    }
}
