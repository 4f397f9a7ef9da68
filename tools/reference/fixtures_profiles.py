"""Colour-profile and EXIF fixtures: a phone-style JPEG (an sRGB ICC profile from Pillow's ImageCms,
EXIF with orientation 6 and a camera model), and a 16-bit RGB PNG with an iCCP chunk and an eXIf
chunk, so that sdflow can show it carries both to the files it writes.

Writes Tests/Fixtures/images/profile.jpg and Tests/Fixtures/images/profile16.png, and
Tests/Fixtures/images/profile.icc (the profile's bytes, for comparison).
"""
import numpy as np
from PIL import Image, ImageCms

from common import fixture_path
from fixtures_images import photo


def exif_bytes(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation      # Orientation
    exif[0x0110] = "sdflow test"    # Model
    exif[0x010F] = "sdflow"         # Make
    return exif.tobytes()


def make():
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    with open(fixture_path("images", "profile.icc"), "wb") as f:
        f.write(icc)
    rgb = Image.fromarray(photo(17, 11, seed=5))
    rgb.save(fixture_path("images", "profile.jpg"), quality=92, icc_profile=icc, exif=exif_bytes(6))
    deep = (photo(9, 7, seed=6).astype(np.uint16) * 257 + np.arange(9, dtype=np.uint16)[None, :, None])

    # Pillow cannot write 16-bit RGB PNGs; write it with pypng and add the chunks by hand.
    import io
    import struct
    import zlib
    import png
    buffer = io.BytesIO()
    png.Writer(9, 7, greyscale=False, bitdepth=16).write(buffer, deep.reshape(7, 9 * 3).tolist())
    data = buffer.getvalue()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    iccp = chunk(b"iCCP", b"sRGB\0\0" + zlib.compress(icc))
    tiff = exif_bytes(1)
    exif = chunk(b"eXIf", tiff[6:] if tiff.startswith(b"Exif\0\0") else tiff)  # eXIf holds the TIFF data itself
    ihdr_end = 8 + 25  # signature, then IHDR (13 bytes of data + 12)
    with open(fixture_path("images", "profile16.png"), "wb") as f:
        f.write(data[:ihdr_end] + iccp + exif + data[ihdr_end:])



if __name__ == "__main__":
    make()
