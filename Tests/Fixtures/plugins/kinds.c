/*
 * A C plugin that uses every kind the plugin ABI has, for PluginKindsTests (compiled by the test
 * with `cc -shared`). Tests/Fixtures/plugins/Kinds.swift is the same pack in Swift; the test
 * runs one workflow through both and expects the same results.
 *
 * kinds_c: every value type in and out, every parameter kind.
 *   image  -> the same pixels, bit depth and metadata, plus a "kinds" entry with the parameters
 *   mask   -> 1 - mask (zeros of the image's size when not connected)
 *   latent, conditioning, tensor -> 2 x the input (a one-element zero when not connected)
 *   number -> the input (0 when not connected) + count
 *   text   -> the input ("" when not connected) + "[" the parameters "]" + "{" the input image's
 *             metadata as key=value, joined by "|" "}" + "@" its bit depth
 *   The parameters' text is "count=..;amount=..;label=..;flag=..;mode=..;seed=..;source=<the
 *   first line of the source file>;folder=<path>;either=<path>".
 * note_c: writes "<text>\n<number>\n" to its output path.
 */
#include "sdflow_plugin.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t element_count(const sdf_value *v) {
    size_t count = 1;
    for (int i = 0; i < v->rank; i++) count *= (size_t)v->shape[i];
    return count;
}

/* The parameters as one line of text (into `out`, `size` bytes). */
static int describe(const sdf_host *host, sdf_context *context, char *out, size_t size, char *error, size_t error_size) {
    char line[256] = "";
    const char *source = host->parameter(context, "source");
    FILE *file = fopen(source, "r");
    if (!file) { snprintf(error, error_size, "cannot open %s", source); return 1; }
    if (!fgets(line, sizeof line, file)) line[0] = 0;
    fclose(file);
    line[strcspn(line, "\n")] = 0;
    snprintf(out, size, "count=%s;amount=%s;label=%s;flag=%s;mode=%s;seed=%s;source=%s;folder=%s;either=%s",
             host->parameter(context, "count"), host->parameter(context, "amount"), host->parameter(context, "label"),
             host->parameter(context, "flag"), host->parameter(context, "mode"), host->parameter(context, "seed"), line,
             host->parameter(context, "folder"), host->parameter(context, "either"));
    return 0;
}

/* Sets `name` to `scale` x the input of the same name, or to a one-element zero. */
static int scaled(const sdf_host *host, sdf_context *context, const char *name, sdf_value_type type) {
    const sdf_value *in = host->input(context, name);
    static const float zero = 0;
    sdf_value out = {.struct_size = sizeof(sdf_value), .type = type, .rank = 1, .shape = {1}, .data = &zero};
    if (!in) return host->set_output(context, name, &out);
    size_t count = element_count(in);
    float *data = malloc(count * sizeof(float));
    for (size_t i = 0; i < count; i++) data[i] = 2 * in->data[i];
    out = *in;
    out.struct_size = sizeof(sdf_value);
    out.type = type;
    out.data = data;
    int status = host->set_output(context, name, &out);
    free(data);
    return status;
}

static int run_kinds(void *data, const sdf_host *host, sdf_context *context, char *error, size_t error_size) {
    if (host->struct_size < sizeof(sdf_host)) { snprintf(error, error_size, "host too old"); return 1; }
    char parameters[4096];
    if (describe(host, context, parameters, sizeof parameters, error, error_size)) return 1;

    /* The image, with one metadata entry added to what it came with. */
    const sdf_value *image = host->input(context, "image");
    sdf_metadata_entry *entries = malloc((image->metadata_count + 1) * sizeof(sdf_metadata_entry));
    for (int i = 0; i < image->metadata_count; i++) entries[i] = image->metadata[i];
    entries[image->metadata_count] = (sdf_metadata_entry){"kinds", parameters};
    sdf_value out = *image;
    out.metadata = entries;
    out.metadata_count = image->metadata_count + 1;
    int status = host->set_output(context, "image", &out);
    free(entries);
    if (status) return status;

    /* The mask, inverted. */
    const sdf_value *mask = host->input(context, "mask");
    size_t plane = (size_t)image->shape[1] * (size_t)image->shape[2];
    float *inverted = calloc(plane, sizeof(float));
    if (mask) for (size_t i = 0; i < element_count(mask) && i < plane; i++) inverted[i] = 1 - mask->data[i];
    sdf_value mask_out = {.struct_size = sizeof(sdf_value), .type = SDF_TYPE_MASK, .rank = 3,
                          .shape = {1, image->shape[1], image->shape[2]}, .data = inverted};
    status = host->set_output(context, "mask", &mask_out);
    free(inverted);
    if (status) return status;

    if (scaled(host, context, "latent", SDF_TYPE_LATENT) || scaled(host, context, "conditioning", SDF_TYPE_CONDITIONING)
        || scaled(host, context, "tensor", SDF_TYPE_TENSOR)) return 1;

    const sdf_value *number = host->input(context, "number");
    sdf_value number_out = {.struct_size = sizeof(sdf_value), .type = SDF_TYPE_NUMBER,
                            .number = (number ? number->number : 0) + atof(host->parameter(context, "count"))};
    if (host->set_output(context, "number", &number_out)) return 1;

    const sdf_value *text = host->input(context, "text");
    char joined[16384];
    int length = snprintf(joined, sizeof joined, "%s[%s]{", text ? text->text : "", parameters);
    for (int i = 0; i < image->metadata_count && length < (int)sizeof joined; i++)
        length += snprintf(joined + length, sizeof joined - length, "%s%s=%s", i ? "|" : "", image->metadata[i].key, image->metadata[i].value);
    if (length < (int)sizeof joined) snprintf(joined + length, sizeof joined - length, "}@%d", image->bit_depth);
    sdf_value text_out = {.struct_size = sizeof(sdf_value), .type = SDF_TYPE_TEXT, .text = joined};
    return host->set_output(context, "text", &text_out);
}

static int run_note(void *data, const sdf_host *host, sdf_context *context, char *error, size_t error_size) {
    const char *path = host->parameter(context, "path");
    FILE *file = fopen(path, "w");
    if (!file) { snprintf(error, error_size, "cannot write %s", path); return 1; }
    fprintf(file, "%s\n%g\n", host->input(context, "text")->text, host->input(context, "number")->number);
    return fclose(file) == 0 ? 0 : 1;
}

#define PORT(name, type, optional) {sizeof(sdf_port), name, type, optional, name}
#define PARAMETER(name, kind, minimum, maximum, choices, default_value) \
    {sizeof(sdf_parameter), name, kind, minimum, maximum, choices, default_value, name}

static const sdf_port kinds_inputs[] = {
    PORT("image", SDF_TYPE_IMAGE, 0), PORT("mask", SDF_TYPE_MASK, 1), PORT("latent", SDF_TYPE_LATENT, 1),
    PORT("conditioning", SDF_TYPE_CONDITIONING, 1), PORT("tensor", SDF_TYPE_TENSOR, 1),
    PORT("number", SDF_TYPE_NUMBER, 1), PORT("text", SDF_TYPE_TEXT, 1),
};
static const sdf_port kinds_outputs[] = {
    PORT("image", SDF_TYPE_IMAGE, 0), PORT("mask", SDF_TYPE_MASK, 0), PORT("latent", SDF_TYPE_LATENT, 0),
    PORT("conditioning", SDF_TYPE_CONDITIONING, 0), PORT("tensor", SDF_TYPE_TENSOR, 0),
    PORT("number", SDF_TYPE_NUMBER, 0), PORT("text", SDF_TYPE_TEXT, 0),
};
static const sdf_parameter kinds_parameters[] = {
    PARAMETER("count", SDF_PARAMETER_INTEGER, 1, 100, 0, "3"),
    PARAMETER("amount", SDF_PARAMETER_NUMBER, 0, 1, 0, "0.5"),
    PARAMETER("label", SDF_PARAMETER_TEXT, 1, 0, 0, "hi"),
    PARAMETER("flag", SDF_PARAMETER_BOOLEAN, 1, 0, 0, "false"),
    PARAMETER("mode", SDF_PARAMETER_CHOICE, 1, 0, "fast,exact", "exact"),
    PARAMETER("seed", SDF_PARAMETER_SEED, 1, 0, 0, "7"),
    PARAMETER("source", SDF_PARAMETER_INPUT_FILE, 1, 0, 0, 0),
    PARAMETER("folder", SDF_PARAMETER_INPUT_FOLDER, 1, 0, 0, 0),
    PARAMETER("either", SDF_PARAMETER_INPUT_FILE_OR_FOLDER, 1, 0, 0, 0),
};
static const sdf_port note_inputs[] = {PORT("text", SDF_TYPE_TEXT, 0), PORT("number", SDF_TYPE_NUMBER, 0)};
static const sdf_parameter note_parameters[] = {PARAMETER("path", SDF_PARAMETER_OUTPUT_PATH, 1, 0, 0, 0)};

#define COUNT(array) (int)(sizeof(array) / sizeof(array[0]))
static const sdf_node nodes[] = {
    {sizeof(sdf_node), "kinds_c", "Every value type and parameter kind (test).", 1, kinds_inputs, COUNT(kinds_inputs),
     kinds_outputs, COUNT(kinds_outputs), kinds_parameters, COUNT(kinds_parameters), 0, run_kinds, 0},
    {sizeof(sdf_node), "note_c", "Write a text and a number to a file (test).", 1, note_inputs, COUNT(note_inputs),
     0, 0, note_parameters, COUNT(note_parameters), 0, run_note, 0},
};
static const sdf_pack pack = {SDFLOW_PLUGIN_ABI_VERSION, sizeof(sdf_pack), "kinds_c", "1", nodes, COUNT(nodes)};

const sdf_pack *sdflow_plugin_pack(void) { return &pack; }
