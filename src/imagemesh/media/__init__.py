"""Decoding untrusted image files (Pillow, PDFium, Ghostscript), the canonical image, the isolated decoder process."""
