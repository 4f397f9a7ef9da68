// PNG (libpng) and JPEG (libjpeg-turbo) decoding and encoding for ImageIO.
//
// Both libraries report errors by longjmp; these wrappers keep every setjmp in C and turn
// errors into a return code plus a message, so a corrupt file is a thrown Swift error, never
// a crash. Decoders check the dimensions before allocating (decompression bombs).
#ifndef SDFLOW_CIMAGECODECS_H
#define SDFLOW_CIMAGECODECS_H

#include <stddef.h>
#include <stdint.h>

#define SDF_ERROR_SIZE 256

// One text chunk (PNG tEXt/zTXt/iTXt). `utf8` is set for iTXt; tEXt and zTXt are Latin-1.
typedef struct {
    char *key;
    char *text;
    int utf8;
} sdf_text;

// A decoded image: interleaved samples, 8-bit (bytes_per_sample 1) or 16-bit native-endian (2).
typedef struct {
    int width, height;
    int channels;          // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
    int bytes_per_sample;  // 1 or 2
    void *pixels;          // width * height * channels * bytes_per_sample bytes, malloc'd
    sdf_text *texts;       // malloc'd array of text chunks (PNG only)
    int text_count;
    int orientation;       // EXIF orientation 1-8 (JPEG; 1 when absent)
    uint8_t *icc;          // the embedded ICC colour profile (JPEG APP2, PNG iCCP), malloc'd, or NULL
    size_t icc_size;
    uint8_t *exif;         // the EXIF data, TIFF header first (JPEG APP1 "Exif", PNG eXIf), malloc'd, or NULL
    size_t exif_size;
} sdf_image;

// Data embedded in a written file besides the pixels: an ICC profile and EXIF (TIFF header first), each optional.
typedef struct {
    const uint8_t *icc;
    size_t icc_size;
    const uint8_t *exif;
    size_t exif_size;
} sdf_embedded;

// Frees the pixels and texts of an image filled by a decoder.
void sdf_image_free(sdf_image *image);

// Decodes a PNG of any colour type and bit depth (palette and tRNS expanded to RGB(A), gray
// below 8 bits to 8, 16-bit kept, interlacing resolved). Returns 0 on success; otherwise
// non-zero with a message in `error`. Refuses images over `max_pixels` before allocating.
int sdf_png_decode(const uint8_t *data, size_t size, uint64_t max_pixels, sdf_image *out, char error[SDF_ERROR_SIZE]);

// Encodes interleaved 8- or 16-bit samples as PNG with text chunks and the embedded data (iCCP,
// eXIf). The result is malloc'd.
int sdf_png_encode(const void *pixels, int width, int height, int channels, int bytes_per_sample,
                   const sdf_text *texts, int text_count, const sdf_embedded *embedded,
                   uint8_t **out, size_t *out_size, char error[SDF_ERROR_SIZE]);

// Decodes a JPEG (baseline or progressive; gray, YCbCr, CMYK or YCCK) to 8-bit gray or RGB, and
// reads the EXIF orientation, the EXIF data and the ICC profile. Returns 0 on success; otherwise
// non-zero with a message.
int sdf_jpeg_decode(const uint8_t *data, size_t size, uint64_t max_pixels, sdf_image *out, char error[SDF_ERROR_SIZE]);

// Encodes 8-bit gray (1 channel) or RGB (3 channels) as a baseline JPEG with the given quality
// (1-100), with the embedded data (APP1 Exif, at most 65527 bytes; APP2 ICC_PROFILE).
int sdf_jpeg_encode(const uint8_t *pixels, int width, int height, int channels, int quality, const sdf_embedded *embedded,
                    uint8_t **out, size_t *out_size, char error[SDF_ERROR_SIZE]);

#endif
