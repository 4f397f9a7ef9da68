import ArgumentParser
import DiffusionModels
import Foundation

/// `sdflow tokenize`: a prompt's 77 CLIP token ids, as the text encoder sees them.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the 77 CLIP token ids of a prompt as a JSON array.",
        discussion: """
            Prompts longer than 75 tokens are cut (the start and end tokens take the other two);
            a warning on standard error says where. With --jsonl, reads one JSON string per line
            from standard input and prints one array per line.
            """)

    @Argument(help: "The prompt.")
    var text: String?

    @Flag(help: "Read JSON strings, one per line, from standard input.")
    var jsonl = false

    @Option(help: "A diffusers folder whose tokenizer/ to use instead of the bundled CLIP vocabulary.")
    var model: String?

    func validate() throws {
        if jsonl == (text != nil) { throw ValidationError("give either a prompt or --jsonl") }
    }

    func run() throws {
        let tokenizer = try model.map { try CLIPTokenizer(folder: $0 + "/tokenizer") } ?? CLIPTokenizer.bundled()
        if let text {
            print(try encode(text, tokenizer: tokenizer, line: nil))
            return
        }
        var lineNumber = 0
        while let line = readLine(strippingNewline: true) {
            lineNumber += 1
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            guard let data = line.data(using: .utf8),
                  let value = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]),
                  let prompt = value as? String else {
                throw ValidationError("standard input line \(lineNumber): not a JSON string")
            }
            print(try encode(prompt, tokenizer: tokenizer, line: lineNumber))
        }
    }

    private func encode(_ prompt: String, tokenizer: CLIPTokenizer, line: Int?) throws -> String {
        let encoding = tokenizer.encode(prompt)
        if encoding.droppedTokenCount > 0 {
            let place = line.map { "line \($0): " } ?? ""
            FileHandle.standardError.write(Data(
                "warning: \(place)prompt is longer than 75 tokens; \(encoding.droppedTokenCount) tokens were cut, from \"\(encoding.droppedText)\"\n".utf8))
        }
        return "[" + encoding.ids.map(String.init).joined(separator: ", ") + "]"
    }
}
