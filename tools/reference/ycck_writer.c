/* Writes raw CMYK samples (Adobe-inverted) as a YCCK JPEG: ycck_writer RAW WIDTH HEIGHT OUT.jpg
   Used by fixtures_images.py, since Pillow cannot write YCCK. */
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    int w = atoi(argv[2]), h = atoi(argv[3]);
    unsigned char *pixels = malloc((size_t)w * h * 4);
    FILE *in = fopen(argv[1], "rb");
    if (!in || fread(pixels, 4, (size_t)w * h, in) != (size_t)w * h) return 1;
    fclose(in);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    FILE *out = fopen(argv[4], "wb");
    jpeg_stdio_dest(&c, out);
    c.image_width = w;
    c.image_height = h;
    c.input_components = 4;
    c.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, JCS_YCCK);
    jpeg_set_quality(&c, 95, TRUE);
    jpeg_start_compress(&c, TRUE);
    for (int y = 0; y < h; y++) {
        JSAMPROW row = pixels + (size_t)y * w * 4;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    fclose(out);
    return 0;
}
