import Foundation
import ImageIO
import NodeKit
import TestSupport
import Testing
import WorkflowEngine

/// Node packs loaded from shared libraries: the example pack built from Plugins/ExamplePlugin,
/// and small C plugins compiled by the tests to exercise every way a plugin can be wrong.
@Suite(.serialized) struct PluginTests {
    let folder = TemporaryFolder()

    /// The example plugin built next to the test bundle (`swift build` builds it).
    static var examplePlugin: String {
        URL(fileURLWithPath: TestEngine.binary).deletingLastPathComponent().appendingPathComponent("libExamplePlugin.so").path
    }

    static var header: String {
        URL(fileURLWithPath: TestEngine.workflows).deletingLastPathComponent().appendingPathComponent("Sources/SDFlowPluginABI").path
    }

    /// Compiles C source into a plugin `name.so` in the temporary folder.
    func compile(_ source: String, name: String) throws -> String {
        let c = folder.file(name + ".c"), library = folder.file("plugins-\(name)/\(name).so")
        try FileManager.default.createDirectory(atPath: folder.file("plugins-\(name)"), withIntermediateDirectories: true)
        try source.write(toFile: c, atomically: true, encoding: .utf8)
        let cc = try TestEngine.runProcess("/usr/bin/env", ["cc", "-shared", "-fPIC", "-I", PluginTests.header, c, "-o", library], in: folder.path)
        #expect(cc.status == 0, "cc failed for \(name): \(cc.errors)")
        return library
    }

    func registryWithBuiltins() throws -> NodeRegistry { try TestEngine.registry() }

    /// Runs load_image (in.png) -> `node` (its YAML mapping, reading `photo`) -> save_image (`output`).
    func runOnImage(node: String, _ definition: String, output: String, registry: NodeRegistry) throws -> RunReport {
        let yaml = """
            version: 1
            nodes:
              photo: {type: load_image, path: in.png}
              \(node): \(definition)
              save: {type: save_image, image: !ref \(node), path: \(output)}
            """
        let path = folder.file("\(output).yaml")
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return Executor(graph: try Graph(workflow: Workflow.load(path: path), registry: registry), options: .init()).run()
    }

    @Test func examplePackLoadsAndRuns() throws {
        #expect(FileManager.default.fileExists(atPath: PluginTests.examplePlugin), "build the package first: \(PluginTests.examplePlugin)")
        let pack = try PluginLoader.load(PluginTests.examplePlugin)
        #expect(pack.name == "example" && pack.version == "1.0" && pack.origin == PluginTests.examplePlugin)
        #expect(Set(pack.nodes.map(\.description.name)) == ["sepia", "color_key_mask", "fail_always"])
        var registry = try registryWithBuiltins()
        try registry.register(pack)
        #expect(registry.entry("sepia")?.pack.origin == PluginTests.examplePlugin)

        // A green square on white: the key colour white masks the background out.
        var image = Image(width: 8, height: 8, channels: 3, value: 1)
        let p = image.pixels.mutablePointer()
        for y in 2..<6 { for x in 2..<6 { p[y * 8 + x] = 0; p[128 + y * 8 + x] = 0.8; p[64 + y * 8 + x] = 0.8 } }
        try ImageFile.write(image, to: folder.file("in.png"))
        let yaml = """
            version: 1
            nodes:
              photo: {type: load_image, path: in.png}
              toned: {type: sepia, image: !ref photo}
              key: {type: color_key_mask, image: !ref photo, color: "#ffffff", tolerance: 0.1}
              maskimage: {type: mask_to_image, mask: !ref key}
              broken: {type: fail_always, image: !ref photo}
              save1: {type: save_image, image: !ref toned, path: toned.png}
              save2: {type: save_image, image: !ref maskimage, path: key.png}
              save3: {type: save_image, image: !ref broken, path: never.png}
            """
        try yaml.write(toFile: folder.file("w.yaml"), atomically: true, encoding: .utf8)
        let graph = try Graph(workflow: Workflow.load(path: folder.file("w.yaml")), registry: registry)
        let cache = try ResultCache(folder: folder.file("cache"))
        let report = Executor(graph: graph, options: .init(cache: cache)).run()
        // The throwing plugin node fails itself (and what depends on it), not the run.
        #expect(report.nodes.first { $0.name == "broken" }?.status == .failed)
        #expect(report.nodes.first { $0.name == "broken" }?.errors.first?.contains("always fails") == true)
        #expect(report.nodes.first { $0.name == "save3" }?.status == .skipped)
        #expect(!FileManager.default.fileExists(atPath: folder.file("never.png")))
        let toned = try ImageFile.read(folder.file("toned.png"))
        #expect(abs(toned.pixels[0, 0, 0] - 1) < 0.01 && toned.pixels[2, 0, 0] < 0.95)  // white turns warm
        let key = try ImageFile.read(folder.file("key.png"))
        #expect(key.pixels[0, 0, 0] == 0 && key.pixels[0, 3, 3] == 1)

        // Plugin results are cached like built-in ones (the pack's name and version are in the key).
        let again = Executor(graph: graph, options: .init(cache: cache)).run()
        #expect(again.nodes.first { $0.name == "toned" }?.status == .diskHit)
    }

    @Test func badPluginsAreRefusedWithTheirFileNamed() throws {
        // Not a shared library at all.
        let text = folder.file("junk/junk.so")
        try FileManager.default.createDirectory(atPath: folder.file("junk"), withIntermediateDirectories: true)
        try "not a library".write(toFile: text, atomically: true, encoding: .utf8)
        #expect(throws: PluginLoader.LoadError.self) { try PluginLoader.load(text) }

        // A library without the entry point.
        let missing = try compile("int unrelated(void) { return 1; }\n", name: "noentry")
        do { _ = try PluginLoader.load(missing); Issue.record("loaded a library without the entry point") }
        catch let e as PluginLoader.LoadError { #expect(e.description.contains(missing) && e.message.contains("sdflow_plugin_pack")) }

        // The wrong ABI version.
        let wrongVersion = try compile("""
            #include "sdflow_plugin.h"
            static const sdf_pack pack = {SDFLOW_PLUGIN_ABI_VERSION + 1, sizeof(sdf_pack), "future", "1", 0, 0};
            const sdf_pack *sdflow_plugin_pack(void) { return &pack; }
            """, name: "future")
        do { _ = try PluginLoader.load(wrongVersion); Issue.record("loaded a plugin of another ABI version") }
        catch let e as PluginLoader.LoadError { #expect(e.description.contains(wrongVersion) && e.message.contains("ABI version 3") && e.message.contains("newer sdflow")) }

        // A library built for ABI version 1 (its own structs, as the version 1 header had them).
        let version1 = try compile("""
            typedef struct { int abi_version; const char *name; const char *version; const void *nodes; int node_count; } sdf_pack_v1;
            static const sdf_pack_v1 pack = {1, "old", "1", 0, 0};
            const sdf_pack_v1 *sdflow_plugin_pack(void) { return &pack; }
            """, name: "version1")
        do { _ = try PluginLoader.load(version1); Issue.record("loaded a plugin built for ABI version 1") }
        catch let e as PluginLoader.LoadError {
            #expect(e.description.contains(version1) && e.message.contains("ABI version 1") && e.message.contains("rebuild it against"), "\(e)")
        }

        // A node name that a built-in pack already uses.
        let duplicate = try compile("""
            #include "sdflow_plugin.h"
            static int run(void *data, const sdf_host *host, sdf_context *context, char *error, size_t size) { return 0; }
            static const sdf_port out[] = {{sizeof(sdf_port), "image", SDF_TYPE_IMAGE, 0, "an image"}};
            static const sdf_node nodes[] = {{sizeof(sdf_node), "load_image", "clash", 1, 0, 0, out, 1, 0, 0, 0, run, 0}};
            static const sdf_pack pack = {SDFLOW_PLUGIN_ABI_VERSION, sizeof(sdf_pack), "clash", "1", nodes, 1};
            const sdf_pack *sdflow_plugin_pack(void) { return &pack; }
            """, name: "clash")
        var registry = try registryWithBuiltins()
        let pack = try PluginLoader.load(duplicate)
        do { try registry.register(pack); Issue.record("registered a duplicate node type") }
        catch let e as NodeRegistry.RegistrationError {
            #expect(e.message.contains("load_image") && e.message.contains(duplicate) && e.message.contains("images"))
        }
    }

    /// Descriptions that crashed sdflow (SIGILL) are refused with the file and the field named.
    @Test func malformedDescriptionsAreRefusedNotCrashed() throws {
        let cases: [(name: String, body: String, says: String)] = [
            ("negative", """
                static const sdf_pack pack = {SDFLOW_PLUGIN_ABI_VERSION, sizeof(sdf_pack), "negative", "1", 0, -1};
                """, "count -1 is out of range"),
            ("nullinputs", """
                static const sdf_node nodes[] = {{sizeof(sdf_node), "null_inputs", "", 1, 0, 1, 0, 0, 0, 0, 0, run, 0}};
                static const sdf_pack pack = {SDFLOW_PLUGIN_ABI_VERSION, sizeof(sdf_pack), "nullinputs", "1", nodes, 1};
                """, "count 1 but no array"),
            ("nullnodes", """
                static const sdf_pack pack = {SDFLOW_PLUGIN_ABI_VERSION, sizeof(sdf_pack), "nullnodes", "1", 0, 3};
                """, "count 3 but no array"),
            ("infinite", """
                static const sdf_parameter parameters[] = {{sizeof(sdf_parameter), "steps", SDF_PARAMETER_INTEGER, 0, INFINITY, 0, "1", "steps"}};
                static const sdf_node nodes[] = {{sizeof(sdf_node), "infinite_range", "", 1, 0, 0, 0, 0, parameters, 1, 0, run, 0}};
                static const sdf_pack pack = {SDFLOW_PLUGIN_ABI_VERSION, sizeof(sdf_pack), "infinite", "1", nodes, 1};
                """, "integer parameter 'steps' has the range 0.0...inf"),
            ("fraction", """
                static const sdf_parameter parameters[] = {{sizeof(sdf_parameter), "count", SDF_PARAMETER_INTEGER, 0.5, 1e300, 0, "1", "count"}};
                static const sdf_node nodes[] = {{sizeof(sdf_node), "fraction_range", "", 1, 0, 0, 0, 0, parameters, 1, 0, run, 0}};
                static const sdf_pack pack = {SDFLOW_PLUGIN_ABI_VERSION, sizeof(sdf_pack), "fraction", "1", nodes, 1};
                """, "whole numbers"),
            // ABI 2's struct sizes: missing (0), or one element of an array another size than the first.
            ("nosize", """
                static const sdf_port in[] = {{0, "image", SDF_TYPE_IMAGE, 0, "an image"}};
                static const sdf_node nodes[] = {{sizeof(sdf_node), "no_size", "", 1, in, 1, 0, 0, 0, 0, 0, run, 0}};
                static const sdf_pack pack = {SDFLOW_PLUGIN_ABI_VERSION, sizeof(sdf_pack), "nosize", "1", nodes, 1};
                """, "node 'no_size': input 0: struct_size 0 is not the size of sdf_port"),
            ("mixedsizes", """
                static const sdf_parameter parameters[] = {{sizeof(sdf_parameter), "a", SDF_PARAMETER_TEXT, 1, 0, 0, "", "a"},
                                                           {sizeof(sdf_parameter) - 8, "b", SDF_PARAMETER_TEXT, 1, 0, 0, "", "b"}};
                static const sdf_node nodes[] = {{sizeof(sdf_node), "mixed_sizes", "", 1, 0, 0, 0, 0, parameters, 2, 0, run, 0}};
                static const sdf_pack pack = {SDFLOW_PLUGIN_ABI_VERSION, sizeof(sdf_pack), "mixedsizes", "1", nodes, 1};
                """, "parameters 1: struct_size"),
            ("packsize", """
                static const sdf_pack pack = {SDFLOW_PLUGIN_ABI_VERSION, 12, "packsize", "1", 0, 0};
                """, "the pack: struct_size 12"),
        ]
        for test in cases {
            let library = try compile("""
                #include "sdflow_plugin.h"
                #include <math.h>
                static int run(void *data, const sdf_host *host, sdf_context *context, char *error, size_t size) { return 0; }
                \(test.body)
                const sdf_pack *sdflow_plugin_pack(void) { return &pack; }
                """, name: test.name)
            do { _ = try PluginLoader.load(library); Issue.record("loaded the malformed plugin \(test.name)") }
            catch let e as PluginLoader.LoadError { #expect(e.description.contains(library) && e.message.contains(test.says), "\(e)") }
        }
    }

    /// A stale library in the automatic plugin folder does not stop every command.
    @Test func aBrokenLibraryInThePluginFolderIsSkippedWithAWarning() throws {
        let library = try compile("""
            #include "sdflow_plugin.h"
            static const sdf_pack pack = {SDFLOW_PLUGIN_ABI_VERSION + 1, sizeof(sdf_pack), "stale", "1", 0, 0};
            const sdf_pack *sdflow_plugin_pack(void) { return &pack; }
            """, name: "stale")
        let folder = URL(fileURLWithPath: library).deletingLastPathComponent().path
        func validate(_ arguments: [String]) throws -> (status: Int32, errors: String) {
            let result = try TestEngine.run(["validate", TestEngine.workflows + "/resize-folder.yaml"] + arguments, in: self.folder.path,
                                            environment: ["SDFLOW_PLUGIN_PATH": folder])
            return (result.status, result.errors)
        }
        let automatic = try validate([])
        #expect(automatic.status == 0 && automatic.errors.contains("warning: skipping plugin \(library)"), "\(automatic)")
        let explicit = try validate(["--plugins", folder])
        #expect(explicit.status != 0 && explicit.errors.contains(library), "\(explicit)")
    }

    /// Outputs a plugin describes wrongly fail the node with the reason, never the process.
    @Test func malformedOutputsFailTheNodeWithTheReason() throws {
        let library = try compile("""
            #include "sdflow_plugin.h"
            #include <string.h>
            static int run(void *data, const sdf_host *host, sdf_context *context, char *error, size_t size) {
                const char *mode = host->parameter(context, "mode");
                sdf_value out = *host->input(context, "image");
                static const sdf_metadata_entry no_key[] = {{0, "value"}};
                if (strcmp(mode, "nosize") == 0) out.struct_size = 0;
                if (strcmp(mode, "depth") == 0) out.bit_depth = 12;
                if (strcmp(mode, "nolist") == 0) { out.metadata_count = 2; out.metadata = 0; }
                if (strcmp(mode, "nokey") == 0) { out.metadata_count = 1; out.metadata = no_key; }
                return host->set_output(context, "image", &out);
            }
            static const sdf_port in[] = {{sizeof(sdf_port), "image", SDF_TYPE_IMAGE, 0, "the image"}};
            static const sdf_port out[] = {{sizeof(sdf_port), "image", SDF_TYPE_IMAGE, 0, "the image"}};
            static const sdf_parameter params[] = {{sizeof(sdf_parameter), "mode", SDF_PARAMETER_CHOICE, 1, 0,
                                                    "nosize,depth,nolist,nokey", "nosize", "what to get wrong"}};
            static const sdf_node nodes[] = {{sizeof(sdf_node), "bad_output", "", 1, in, 1, out, 1, params, 1, 0, run, 0}};
            static const sdf_pack pack = {SDFLOW_PLUGIN_ABI_VERSION, sizeof(sdf_pack), "badoutput", "1", nodes, 1};
            const sdf_pack *sdflow_plugin_pack(void) { return &pack; }
            """, name: "badoutput")
        var registry = try registryWithBuiltins()
        try registry.register(try PluginLoader.load(library))
        try ImageFile.write(Image(width: 2, height: 2, channels: 3, value: 0.5), to: folder.file("in.png"))
        for (mode, says) in [("nosize", "struct_size 0 is not the size of sdf_value"), ("depth", "has bit_depth 12"),
                             ("nolist", "malformed metadata"), ("nokey", "malformed metadata")] {
            let report = try runOnImage(node: "bad", "{type: bad_output, image: !ref photo, mode: \(mode)}",
                                        output: "out-\(mode).png", registry: registry)
            let errors = report.nodes.first { $0.name == "bad" }?.errors ?? []
            #expect(errors.contains { $0.contains(says) && $0.contains(library) }, "\(mode): \(errors)")
            #expect(!FileManager.default.fileExists(atPath: folder.file("out-\(mode).png")))
        }
    }

    @Test func cPluginReportsErrorsAndWorks() throws {
        // A plugin written in C: `invert` on images, failing on request.
        let library = try compile("""
            #include "sdflow_plugin.h"
            #include <stdlib.h>
            #include <string.h>
            #include <stdio.h>
            static int run(void *data, const sdf_host *host, sdf_context *context, char *error, size_t size) {
                const sdf_value *image = host->input(context, "image");
                if (strcmp(host->parameter(context, "fail"), "true") == 0) { snprintf(error, size, "asked to fail"); return 1; }
                size_t count = 1; for (int i = 0; i < image->rank; i++) count *= (size_t)image->shape[i];
                float *pixels = malloc(count * sizeof(float));
                for (size_t i = 0; i < count; i++) pixels[i] = 1.0f - image->data[i];
                sdf_value out = *image; out.data = pixels;
                int status = host->set_output(context, "image", &out);
                free(pixels);
                return status;
            }
            static const sdf_port in[] = {{sizeof(sdf_port), "image", SDF_TYPE_IMAGE, 0, "the image"}};
            static const sdf_port out[] = {{sizeof(sdf_port), "image", SDF_TYPE_IMAGE, 0, "the inverted image"}};
            static const sdf_parameter params[] = {{sizeof(sdf_parameter), "fail", SDF_PARAMETER_BOOLEAN, 1, 0, 0, "false", "fail on purpose"}};
            static const sdf_node nodes[] = {{sizeof(sdf_node), "invert_c", "Invert an image (C plugin).", 1, in, 1, out, 1, params, 1, 0, run, 0}};
            static const sdf_pack pack = {SDFLOW_PLUGIN_ABI_VERSION, sizeof(sdf_pack), "cpack", "2", nodes, 1};
            const sdf_pack *sdflow_plugin_pack(void) { return &pack; }
            """, name: "cpack")
        var registry = try registryWithBuiltins()
        try registry.register(try PluginLoader.load(library))
        try ImageFile.write(Image(width: 4, height: 4, channels: 3, value: 0.25), to: folder.file("in.png"))
        for fail in [false, true] {
            let report = try runOnImage(node: "inverted", "{type: invert_c, image: !ref photo, fail: \(fail)}",
                                        output: "out-\(fail).png", registry: registry)
            if fail {
                #expect(report.nodes.first { $0.name == "inverted" }?.errors.first?.contains("asked to fail") == true)
                #expect(report.nodes.first { $0.name == "inverted" }?.errors.first?.contains(library) == true)
            } else {
                #expect(report.succeeded)
                #expect(abs(try ImageFile.read(folder.file("out-false.png")).pixels[1, 2, 2] - 0.75) < 0.003)
            }
        }
    }
}
