"""Compressed scenes: the ``.ncz`` container (``container``), weight quantisation and bit
packing (``quant``), and VQRF (``vq``)."""
