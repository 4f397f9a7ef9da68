#include "CImageCodecs.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sdf_image_free(sdf_image *image) {
    if (!image) return;
    free(image->pixels);
    for (int i = 0; i < image->text_count; i++) {
        free(image->texts[i].key);
        free(image->texts[i].text);
    }
    free(image->texts);
    free(image->icc);
    free(image->exif);
    memset(image, 0, sizeof *image);
}

// MARK: - Reading

typedef struct {
    const uint8_t *data;
    size_t size, position;
    char *error;
} png_source;

static void png_error_handler(png_structp png, png_const_charp message) {
    png_source *source = (png_source *)png_get_error_ptr(png);
    snprintf(source->error, SDF_ERROR_SIZE, "%s", message);
    png_longjmp(png, 1);
}

static void png_warning_handler(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static void png_read_from_memory(png_structp png, png_bytep out, png_size_t count) {
    png_source *source = (png_source *)png_get_io_ptr(png);
    if (count > source->size - source->position) png_error(png, "the file ends too early (truncated)");
    memcpy(out, source->data + source->position, count);
    source->position += count;
}

static char *copy_string(const char *s, size_t length) {
    char *copy = malloc(length + 1);
    if (copy) {
        memcpy(copy, s, length);
        copy[length] = 0;
    }
    return copy;
}

int sdf_png_decode(const uint8_t *data, size_t size, uint64_t max_pixels, sdf_image *out, char error[SDF_ERROR_SIZE]) {
    memset(out, 0, sizeof *out);
    out->orientation = 1;
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        snprintf(error, SDF_ERROR_SIZE, "not a PNG file (bad signature)");
        return 1;
    }
    // Every chunk must fit in the file: libpng allocates a chunk's declared length before reading
    // it, so a 100-byte file claiming a 1.9 GB text chunk would cost 1.9 GB (found by fuzzing).
    for (size_t pos = 8; pos + 8 <= size;) {
        uint32_t length = (uint32_t)data[pos] << 24 | (uint32_t)data[pos + 1] << 16 | (uint32_t)data[pos + 2] << 8 | data[pos + 3];
        const char *type = (const char *)data + pos + 4;
        if (length > 0x7fffffffu || (size_t)length + 12 > size - pos) {
            snprintf(error, SDF_ERROR_SIZE, "chunk '%.4s' claims %u bytes but only %zu remain (a truncated or corrupt file)",
                     type, length, size - pos - 8);
            return 1;
        }
        if (memcmp(type, "IEND", 4) == 0) break;
        pos += (size_t)length + 12;
    }
    png_source source = {data, size, 0, error};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &source, png_error_handler, png_warning_handler);
    if (!png) {
        snprintf(error, SDF_ERROR_SIZE, "out of memory");
        return 1;
    }
    png_infop info = png_create_info_struct(png);
    png_bytep *volatile rows = NULL;
    uint8_t *volatile pixels = NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        if (!info) snprintf(error, SDF_ERROR_SIZE, "out of memory");
        free(rows);
        free(pixels);
        sdf_image_free(out);
        png_destroy_read_struct(&png, info ? &info : NULL, NULL);
        return 1;
    }
    png_set_read_fn(png, &source, png_read_from_memory);
    png_set_user_limits(png, 1000000, 1000000);
    png_set_chunk_malloc_max(png, 64 << 20);
    png_read_info(png, info);

    png_uint_32 width = png_get_image_width(png, info), height = png_get_image_height(png, info);
    if ((uint64_t)width * height > max_pixels) {
        snprintf(error, SDF_ERROR_SIZE, "the image is %u x %u pixels, over the limit of %llu pixels (a decompression bomb?)",
                 width, height, (unsigned long long)max_pixels);
        png_longjmp(png, 1);
    }
    int color_type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (depth == 16) png_set_swap(png);
#endif
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int channels = png_get_channels(png, info);
    int bytes_per_sample = png_get_bit_depth(png, info) == 16 ? 2 : 1;
    size_t row_bytes = png_get_rowbytes(png, info);
    if (row_bytes != (size_t)width * channels * bytes_per_sample) png_error(png, "unexpected row layout");
    pixels = malloc(row_bytes * height);
    rows = malloc(sizeof(png_bytep) * height);
    if (!pixels || !rows) png_error(png, "out of memory for the pixels");
    for (png_uint_32 y = 0; y < height; y++) rows[y] = pixels + y * row_bytes;
    png_read_image(png, rows);
    png_read_end(png, info);

    png_textp texts = NULL;
    int text_count = png_get_text(png, info, &texts, NULL);
    if (text_count > 0) {
        out->texts = calloc((size_t)text_count, sizeof(sdf_text));
        if (!out->texts) png_error(png, "out of memory for text chunks");
        out->text_count = text_count;
        for (int i = 0; i < text_count; i++) {
            size_t length = texts[i].compression >= PNG_ITXT_COMPRESSION_NONE ? texts[i].itxt_length : texts[i].text_length;
            out->texts[i].key = copy_string(texts[i].key, strlen(texts[i].key));
            out->texts[i].text = copy_string(texts[i].text ? texts[i].text : "", texts[i].text ? length : 0);
            out->texts[i].utf8 = texts[i].compression >= PNG_ITXT_COMPRESSION_NONE;
        }
    }
    // The colour profile and EXIF, copied (libpng frees its own with the read struct).
    png_charp icc_name = NULL;
    png_bytep icc = NULL;
    png_uint_32 icc_size = 0;
    int icc_compression = 0;
    if (png_get_iCCP(png, info, &icc_name, &icc_compression, &icc, &icc_size) && icc && icc_size > 0) {
        out->icc = malloc(icc_size);
        if (!out->icc) png_error(png, "out of memory for the ICC profile");
        memcpy(out->icc, icc, icc_size);
        out->icc_size = icc_size;
    }
    png_bytep exif = NULL;
    png_uint_32 exif_size = 0;
    if (png_get_eXIf_1(png, info, &exif_size, &exif) && exif && exif_size > 0) {
        out->exif = malloc(exif_size);
        if (!out->exif) png_error(png, "out of memory for the EXIF data");
        memcpy(out->exif, exif, exif_size);
        out->exif_size = exif_size;
    }
    free(rows);
    out->width = (int)width;
    out->height = (int)height;
    out->channels = channels;
    out->bytes_per_sample = bytes_per_sample;
    out->pixels = pixels;
    png_destroy_read_struct(&png, &info, NULL);
    return 0;
}

// MARK: - Writing

typedef struct {
    uint8_t *data;
    size_t size, capacity;
    char *error;
} png_sink;

static void png_write_to_memory(png_structp png, png_bytep bytes, png_size_t count) {
    png_sink *sink = (png_sink *)png_get_io_ptr(png);
    if (sink->size + count > sink->capacity) {
        size_t capacity = sink->capacity ? sink->capacity * 2 : 65536;
        while (capacity < sink->size + count) capacity *= 2;
        uint8_t *grown = realloc(sink->data, capacity);
        if (!grown) png_error(png, "out of memory");
        sink->data = grown;
        sink->capacity = capacity;
    }
    memcpy(sink->data + sink->size, bytes, count);
    sink->size += count;
}

static void png_flush_memory(png_structp png) { (void)png; }

int sdf_png_encode(const void *pixels, int width, int height, int channels, int bytes_per_sample,
                   const sdf_text *texts, int text_count, const sdf_embedded *embedded,
                   uint8_t **out, size_t *out_size, char error[SDF_ERROR_SIZE]) {
    static const int color_types[] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    if (channels < 1 || channels > 4 || (bytes_per_sample != 1 && bytes_per_sample != 2) || width <= 0 || height <= 0) {
        snprintf(error, SDF_ERROR_SIZE, "cannot write a %d-channel, %d-byte, %d x %d PNG", channels, bytes_per_sample, width, height);
        return 1;
    }
    png_sink sink = {NULL, 0, 0, error};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, png_error_handler, png_warning_handler);
    if (!png) {
        snprintf(error, SDF_ERROR_SIZE, "out of memory");
        return 1;
    }
    png_infop info = png_create_info_struct(png);
    png_bytep *volatile rows = NULL;
    png_textp volatile chunk = NULL;
    if (!info || setjmp(png_jmpbuf(png))) {
        if (!info) snprintf(error, SDF_ERROR_SIZE, "out of memory");
        free(rows);
        free(chunk);
        free(sink.data);
        png_destroy_write_struct(&png, info ? &info : NULL);
        return 1;
    }
    png_set_write_fn(png, &sink, png_write_to_memory, png_flush_memory);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8 * bytes_per_sample, color_types[channels],
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (text_count > 0) {
        chunk = calloc((size_t)text_count, sizeof(png_text));
        if (!chunk) png_error(png, "out of memory");
        for (int i = 0; i < text_count; i++) {
            int ascii = 1;
            for (const unsigned char *c = (const unsigned char *)texts[i].text; *c; c++) if (*c >= 0x80) ascii = 0;
            // Plain ASCII as tEXt (what other tools read most widely), anything else as UTF-8 iTXt.
            chunk[i].compression = ascii ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
            chunk[i].key = texts[i].key;
            chunk[i].text = texts[i].text;
            chunk[i].text_length = strlen(texts[i].text);
        }
        png_set_text(png, info, chunk, text_count);
    }
    if (embedded && embedded->icc && embedded->icc_size > 0)
        png_set_iCCP(png, info, "icc", PNG_COMPRESSION_TYPE_BASE, embedded->icc, (png_uint_32)embedded->icc_size);
    if (embedded && embedded->exif && embedded->exif_size > 0)
        png_set_eXIf_1(png, info, (png_uint_32)embedded->exif_size, (png_bytep)embedded->exif);
    png_write_info(png, info);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (bytes_per_sample == 2) png_set_swap(png);
#endif
    rows = malloc(sizeof(png_bytep) * (size_t)height);
    if (!rows) png_error(png, "out of memory");
    size_t row_bytes = (size_t)width * channels * bytes_per_sample;
    for (int y = 0; y < height; y++) rows[y] = (png_bytep)pixels + (size_t)y * row_bytes;
    png_write_image(png, rows);
    png_write_end(png, info);
    free(rows);
    free(chunk);
    png_destroy_write_struct(&png, &info);
    *out = sink.data;
    *out_size = sink.size;
    return 0;
}
