/*
 * sdflow node-pack plugins: the C ABI.
 *
 * A plugin is a shared library that exports one function,
 *
 *     const sdf_pack *sdflow_plugin_pack(void);
 *
 * returning a description of its nodes (names, ports, parameters) with a run function for
 * each. sdflow loads plugins from --plugins DIR, SDFLOW_PLUGIN_PATH and the user plugin folder,
 * checks `abi_version`, registers the nodes, and calls `run` with host callbacks to read inputs
 * and parameters and to set outputs. Values cross as float32 arrays with a shape (images and
 * masks are (C, H, W) in [0, 1], with their bit depth and text metadata), numbers and UTF-8
 * text. Every pointer the host passes is valid only during the call; the host copies outputs.
 *
 * Every struct but sdf_metadata_entry starts with `struct_size` (after `abi_version` in sdf_pack): set it to sizeof the
 * struct, so that later versions can add fields at the end. Arrays (nodes, ports, parameters)
 * are read with their first element's struct_size as the stride, and every element must state
 * the same size. The host sets it in what it passes (sdf_host, sdf_value): check it before
 * reading a field a later version added.
 *
 * Version 2 (this header) added struct_size, the seed and path parameter kinds, and the bit
 * depth and metadata of images. Libraries built for version 1 are refused with a message that
 * says to rebuild them against this header.
 *
 * Swift packs need not use this header: the SDFlowPlugin module exports a NodeKit NodePack.
 */
#ifndef SDFLOW_PLUGIN_H
#define SDFLOW_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define SDFLOW_PLUGIN_ABI_VERSION 2
#define SDFLOW_PLUGIN_ENTRY_POINT "sdflow_plugin_pack"

typedef enum {
    SDF_TYPE_IMAGE = 1,
    SDF_TYPE_MASK = 2,
    SDF_TYPE_LATENT = 3,
    SDF_TYPE_CONDITIONING = 4,
    SDF_TYPE_TENSOR = 5,
    SDF_TYPE_NUMBER = 6,
    SDF_TYPE_TEXT = 7,
} sdf_value_type;

typedef enum {
    SDF_PARAMETER_INTEGER = 1,
    SDF_PARAMETER_NUMBER = 2,
    SDF_PARAMETER_TEXT = 3,
    SDF_PARAMETER_BOOLEAN = 4,
    SDF_PARAMETER_CHOICE = 5,
    /* A seed: 0...2^63-1 or "random" in a workflow; the node always gets the number drawn. */
    SDF_PARAMETER_SEED = 6,
    /* A file, a folder or either that the node reads: the host resolves it against the workflow's
       folder, checks that it exists before anything runs and keys cached results by its content. */
    SDF_PARAMETER_INPUT_FILE = 7,
    SDF_PARAMETER_INPUT_FOLDER = 8,
    SDF_PARAMETER_INPUT_FILE_OR_FOLDER = 9,
    /* A file the node writes: resolved against the output folder and checked to be writable, and
       not written by another node, before anything runs. A node with such a parameter is an
       output node (it runs every time, like save_image). */
    SDF_PARAMETER_OUTPUT_PATH = 10,
} sdf_parameter_kind;

/* An input or output port. */
typedef struct {
    uint32_t struct_size; /* sizeof(sdf_port) */
    const char *name;
    sdf_value_type type;
    int optional;
    const char *help;
} sdf_port;

/* A parameter: integer/number ranges (minimum > maximum means none), choices as a
   comma-separated list, the default in text form (NULL when required). */
typedef struct {
    uint32_t struct_size; /* sizeof(sdf_parameter) */
    const char *name;
    sdf_parameter_kind kind;
    double minimum, maximum;
    const char *choices;
    const char *default_value;
    const char *help;
} sdf_parameter;

/* One text entry of an image's metadata (a PNG text chunk: "parameters", "sdflow:workflow", ...). */
typedef struct {
    const char *key;
    const char *value;
} sdf_metadata_entry;

/* A value crossing the ABI. Tensor-like types use rank/shape/data; numbers `number`; text `text`. */
typedef struct {
    uint32_t struct_size; /* sizeof(sdf_value): set it in every value you pass to set_output */
    sdf_value_type type;
    int32_t rank;
    int64_t shape[8];
    const float *data;
    double number;
    const char *text;
    /* Images and masks: the bits per sample of the file they came from (8 or 16; 0 means 8),
       which save_image keeps, and their text metadata. Copy both from an input image to keep them. */
    int32_t bit_depth;
    int32_t metadata_count;
    const sdf_metadata_entry *metadata;
} sdf_value;

/* The host's side of one node execution (opaque to plugins). */
typedef struct sdf_context sdf_context;

/* What the host offers a running node. */
typedef struct {
    uint32_t struct_size; /* sizeof(sdf_host) of the host's version: later versions add callbacks at the end */
    /* The value connected to an input, or NULL when an optional input is not connected. */
    const sdf_value *(*input)(sdf_context *context, const char *name);
    /* A parameter's value in text form ("12", "0.5", "true", "lanczos"). */
    const char *(*parameter)(sdf_context *context, const char *name);
    /* Sets an output; the host copies the value. Returns 0 on success. */
    int (*set_output)(sdf_context *context, const char *name, const sdf_value *value);
    void (*progress)(sdf_context *context, int completed, int total);
    int (*is_cancelled)(sdf_context *context);
    void (*warn)(sdf_context *context, const char *message);
} sdf_host;

/* Runs a node: returns 0 on success, or non-zero with a message in `error`. */
typedef int (*sdf_run_function)(void *node_data, const sdf_host *host, sdf_context *context,
                                 char *error, size_t error_size);

typedef struct {
    uint32_t struct_size; /* sizeof(sdf_node) */
    const char *name;
    const char *summary;
    int version;
    const sdf_port *inputs;
    int input_count;
    const sdf_port *outputs;
    int output_count;
    const sdf_parameter *parameters;
    int parameter_count;
    int is_output;
    sdf_run_function run;
    void *node_data;
} sdf_node;

typedef struct {
    int abi_version;      /* SDFLOW_PLUGIN_ABI_VERSION: first in every version */
    uint32_t struct_size; /* sizeof(sdf_pack) */
    const char *name;
    const char *version;
    const sdf_node *nodes;
    int node_count;
} sdf_pack;

typedef const sdf_pack *(*sdf_pack_function)(void);

#endif
