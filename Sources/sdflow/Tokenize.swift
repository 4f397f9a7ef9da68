import ArgumentParser
import DiffusionModels
import Foundation

/// `sdflow tokenize`: a prompt's CLIP token ids as the text encoder sees them, or its parsed weights.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the CLIP token ids of a prompt as a JSON array, or its weights with --weights.",
        discussion: """
            The prompt is parsed as clip_encode parses it (--weighting, default a1111) and cut into
            chunks of 75 tokens, each between the start and end tokens and padded to 77: the array
            holds 77 ids per chunk. With --weights, prints the parsed pieces and each chunk's tokens
            with their weights instead. With --jsonl, reads one JSON string per line from standard
            input and prints one array per line.
            """)

    @Argument(help: "The prompt.")
    var text: String?

    @Flag(help: "Read JSON strings, one per line, from standard input.")
    var jsonl = false

    @Option(help: "A diffusers folder whose tokenizer/ to use instead of the bundled CLIP vocabulary.")
    var model: String?

    @Option(help: "How emphasis is read: a1111, comfy or none (as clip_encode's weighting).")
    var weighting: PromptWeighting = .a1111

    @Flag(help: "Show the parsed pieces and every token's weight, chunk by chunk.")
    var weights = false

    @Option(help: "A folder of textual-inversion embeddings (their vectors show as ids from 1073741824).")
    var embeddings: String?

    func validate() throws {
        if jsonl == (text != nil) { throw ValidationError("give either a prompt or --jsonl") }
    }

    /// "(embedding NAME k/n)" for the id of a textual-inversion vector.
    static func embeddingLabel(_ id: Int, _ chunks: PromptChunks) -> String {
        let index = id - PromptChunks.embeddingBase
        return chunks.vectorNames.indices.contains(index) ? "(embedding \(chunks.vectorNames[index]))" : "(embedding vector)"
    }

    func run() throws {
        let tokenizer = try model.map { try CLIPTokenizer(folder: $0 + "/tokenizer") } ?? CLIPTokenizer.bundled()
        let library = try embeddings.map { try EmbeddingLibrary(folder: $0) } ?? EmbeddingLibrary()
        if let text {
            print(try describe(text, tokenizer: tokenizer, library: library))
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
            print(try describe(prompt, tokenizer: tokenizer, library: library))
        }
    }

    private func describe(_ prompt: String, tokenizer: CLIPTokenizer, library: EmbeddingLibrary) throws -> String {
        let chunks = try tokenizer.chunks(prompt, weighting: weighting, embeddings: library)
        guard weights else { return "[" + chunks.ids.joined().map(String.init).joined(separator: ", ") + "]" }
        let names = Dictionary(tokenizer.vocabulary.ids.map { ($0.value, $0.key) }, uniquingKeysWith: { a, _ in a })
        var lines = ["pieces (\(weighting.rawValue)): " + PromptParser.parse(prompt, style: weighting).map(\.description).joined(separator: ", ")]
        for (k, (ids, w)) in zip(chunks.ids, chunks.weights).enumerated() {
            lines.append("chunk \(k + 1) of \(chunks.ids.count): \(chunks.lengths[k]) of \(CLIPTokenizer.chunkLength) tokens")
            lines += zip(ids, w).dropFirst().prefix(chunks.lengths[k]).map { id, weight in
                "  \(String(format: "%6d", id))  \((names[id] ?? Tokenize.embeddingLabel(id, chunks)).replacingOccurrences(of: "</w>", with: " "))"
                    + (weight == 1 ? "" : "  x\(weight)")
            }
        }
        return lines.joined(separator: "\n")
    }
}

extension PromptWeighting: ExpressibleByArgument {}
