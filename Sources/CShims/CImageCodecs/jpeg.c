#include "CImageCodecs.h"

#include <stdio.h>  // before jpeglib.h, which uses FILE

#include <jpeglib.h>
#include <jerror.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
    char *error;
} jpeg_error;

static void jpeg_error_exit(j_common_ptr info) {
    jpeg_error *e = (jpeg_error *)info->err;
    char message[JMSG_LENGTH_MAX];
    (*info->err->format_message)(info, message);
    snprintf(e->error, SDF_ERROR_SIZE, "%s", message);
    longjmp(e->jump, 1);
}

static void jpeg_silence(j_common_ptr info) { (void)info; }

// Warnings stay silent, except the one for a file that ends before its image data does:
// libjpeg would pad the rest with grey and go on, Pillow refuses the file, and so do we.
static void jpeg_warning(j_common_ptr info, int level) {
    if (level < 0 && info->err->msg_code == JWRN_JPEG_EOF) {
        jpeg_error *e = (jpeg_error *)info->err;
        snprintf(e->error, SDF_ERROR_SIZE, "truncated JPEG: the file ends before its image data does");
        longjmp(e->jump, 1);
    }
    if (level < 0) info->err->num_warnings++;
}

// The EXIF orientation (tag 0x0112 of IFD0) in an APP1 "Exif" segment, or 1.
static int exif_orientation(const uint8_t *d, unsigned length) {
    if (length < 14 || memcmp(d, "Exif\0\0", 6) != 0) return 1;
    const uint8_t *tiff = d + 6;
    unsigned size = length - 6;
    int little = tiff[0] == 'I' && tiff[1] == 'I';
    if (!little && !(tiff[0] == 'M' && tiff[1] == 'M')) return 1;
#define U16(p) (little ? (unsigned)((p)[0] | (p)[1] << 8) : (unsigned)((p)[0] << 8 | (p)[1]))
#define U32(p) (little ? ((uint32_t)(p)[0] | (uint32_t)(p)[1] << 8 | (uint32_t)(p)[2] << 16 | (uint32_t)(p)[3] << 24) \
                       : ((uint32_t)(p)[0] << 24 | (uint32_t)(p)[1] << 16 | (uint32_t)(p)[2] << 8 | (uint32_t)(p)[3]))
    uint32_t ifd = U32(tiff + 4);
    if (ifd > size - 2 || size < 8) return 1;
    unsigned count = U16(tiff + ifd);
    for (unsigned i = 0; i < count; i++) {
        uint32_t entry = ifd + 2 + 12 * i;
        if (entry + 12 > size) break;
        if (U16(tiff + entry) == 0x0112) {
            unsigned value = U16(tiff + entry + 8);
            return value >= 1 && value <= 8 ? (int)value : 1;
        }
    }
#undef U16
#undef U32
    return 1;
}

// Pillow's CMYK -> RGB: (255 - C) * (255 - K) / 255 per channel, rounded as MULDIV255.
static inline uint8_t cmyk_channel(unsigned c, unsigned k) {
    unsigned nk = 255 - k, t = c * nk + 128;
    int v = (int)nk - (int)((t + (t >> 8)) >> 8);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

int sdf_jpeg_decode(const uint8_t *data, size_t size, uint64_t max_pixels, sdf_image *out, char error[SDF_ERROR_SIZE]) {
    memset(out, 0, sizeof *out);
    out->orientation = 1;
    if (size < 3 || data[0] != 0xFF || data[1] != 0xD8) {
        snprintf(error, SDF_ERROR_SIZE, "not a JPEG file (bad signature)");
        return 1;
    }
    struct jpeg_decompress_struct info;
    jpeg_error e;
    e.error = error;
    info.err = jpeg_std_error(&e.manager);
    e.manager.error_exit = jpeg_error_exit;
    e.manager.output_message = jpeg_silence;
    e.manager.emit_message = jpeg_warning;
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile row = NULL;
    if (setjmp(e.jump)) {
        free(pixels);
        free(row);
        free(out->exif);
        free(out->icc);
        out->exif = out->icc = NULL;
        jpeg_destroy_decompress(&info);
        return 1;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, (unsigned long)size);
    jpeg_save_markers(&info, JPEG_APP0 + 1, 0xFFFF);
    jpeg_save_markers(&info, JPEG_APP0 + 2, 0xFFFF);
    jpeg_read_header(&info, TRUE);
    if ((uint64_t)info.image_width * info.image_height > max_pixels) {
        snprintf(error, SDF_ERROR_SIZE, "the image is %u x %u pixels, over the limit of %llu pixels (a decompression bomb?)",
                 info.image_width, info.image_height, (unsigned long long)max_pixels);
        jpeg_destroy_decompress(&info);
        return 1;
    }
    for (jpeg_saved_marker_ptr m = info.marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && !out->exif && m->data_length > 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
            out->orientation = exif_orientation(m->data, m->data_length);
            out->exif = malloc(m->data_length - 6);
            if (!out->exif) {
                snprintf(error, SDF_ERROR_SIZE, "out of memory for the EXIF data");
                longjmp(e.jump, 1);
            }
            memcpy(out->exif, m->data + 6, m->data_length - 6);
            out->exif_size = m->data_length - 6;
        }
    }
    // The ICC profile, possibly in several APP2 chunks (libjpeg-turbo joins them; malloc'd).
    JOCTET *icc = NULL;
    unsigned int icc_size = 0;
    if (jpeg_read_icc_profile(&info, &icc, &icc_size) && icc) {
        out->icc = icc;
        out->icc_size = icc_size;
    }
    int cmyk = info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK;
    int gray = info.jpeg_color_space == JCS_GRAYSCALE;
    info.out_color_space = cmyk ? JCS_CMYK : gray ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&info);
    int channels = gray ? 1 : 3;
    size_t width = info.output_width, height = info.output_height;
    pixels = malloc(width * height * (size_t)channels);
    row = malloc(width * (size_t)info.output_components);
    if (!pixels || !row) {
        snprintf(error, SDF_ERROR_SIZE, "out of memory for the pixels");
        longjmp(e.jump, 1);
    }
    // Adobe files store CMYK inverted (as Pillow undoes with its "CMYK;I" raw mode).
    int inverted = cmyk && info.saw_Adobe_marker;
    while (info.output_scanline < info.output_height) {
        size_t y = info.output_scanline;
        JSAMPROW rows[1] = {cmyk ? row : pixels + y * width * channels};
        jpeg_read_scanlines(&info, rows, 1);
        if (cmyk) {
            uint8_t *dst = pixels + y * width * 3;
            for (size_t x = 0; x < width; x++) {
                unsigned c = row[4 * x], m = row[4 * x + 1], yy = row[4 * x + 2], k = row[4 * x + 3];
                if (inverted) { c = 255 - c; m = 255 - m; yy = 255 - yy; k = 255 - k; }
                dst[3 * x] = cmyk_channel(c, k);
                dst[3 * x + 1] = cmyk_channel(m, k);
                dst[3 * x + 2] = cmyk_channel(yy, k);
            }
        }
    }
    jpeg_finish_decompress(&info);
    jpeg_destroy_decompress(&info);
    free(row);
    out->width = (int)width;
    out->height = (int)height;
    out->channels = channels;
    out->bytes_per_sample = 1;
    out->pixels = pixels;
    return 0;
}

int sdf_jpeg_encode(const uint8_t *pixels, int width, int height, int channels, int quality, const sdf_embedded *embedded,
                    uint8_t **out, size_t *out_size, char error[SDF_ERROR_SIZE]) {
    if ((channels != 1 && channels != 3) || width <= 0 || height <= 0 || width > 65500 || height > 65500) {
        snprintf(error, SDF_ERROR_SIZE, "cannot write a %d-channel %d x %d JPEG", channels, width, height);
        return 1;
    }
    struct jpeg_compress_struct info;
    jpeg_error e;
    e.error = error;
    info.err = jpeg_std_error(&e.manager);
    e.manager.error_exit = jpeg_error_exit;
    e.manager.output_message = jpeg_silence;
    // The destination buffer is written through its address, so it stays valid across longjmp.
    unsigned char *buffer = NULL;
    unsigned long size = 0;
    if (setjmp(e.jump)) {
        jpeg_destroy_compress(&info);
        free(buffer);
        return 1;
    }
    jpeg_create_compress(&info);
    jpeg_mem_dest(&info, &buffer, &size);
    info.image_width = (JDIMENSION)width;
    info.image_height = (JDIMENSION)height;
    info.input_components = channels;
    info.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&info);
    jpeg_set_quality(&info, quality < 1 ? 1 : quality > 100 ? 100 : quality, TRUE);
    jpeg_start_compress(&info, TRUE);
    if (embedded && embedded->exif && embedded->exif_size > 0 && embedded->exif_size <= 65533 - 6) {
        unsigned char *marker = malloc(embedded->exif_size + 6);
        if (!marker) {
            snprintf(error, SDF_ERROR_SIZE, "out of memory for the EXIF data");
            longjmp(e.jump, 1);
        }
        memcpy(marker, "Exif\0\0", 6);
        memcpy(marker + 6, embedded->exif, embedded->exif_size);
        jpeg_write_marker(&info, JPEG_APP0 + 1, marker, (unsigned int)(embedded->exif_size + 6));
        free(marker);
    }
    if (embedded && embedded->icc && embedded->icc_size > 0)
        jpeg_write_icc_profile(&info, embedded->icc, (unsigned int)embedded->icc_size);
    while (info.next_scanline < info.image_height) {
        JSAMPROW rows[1] = {(JSAMPROW)(pixels + (size_t)info.next_scanline * width * channels)};
        jpeg_write_scanlines(&info, rows, 1);
    }
    jpeg_finish_compress(&info);
    jpeg_destroy_compress(&info);
    *out = buffer;
    *out_size = size;
    return 0;
}
