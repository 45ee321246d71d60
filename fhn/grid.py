"""`recommend --grid PNG`: the recommended outfits of one user as an image grid (one row per
outfit: rank, binary score, positive mark, then its top / bottom / shoe pictures from the image
store, LMDB or folder)."""
import logging

from PIL import Image, ImageDraw

from common.atomic import atomic_open
from common.safeio import check_writable
from fhn.data import DataError, fill_second_top

LOGGER = logging.getLogger(__name__)

TILE = 128
PAD = 4
LABEL_W = 120
TITLE_H = 24


def grid_size(num_outfits, num_slots):
    """(width, height) of the PNG for `num_outfits` rows of `num_slots` pictures."""
    return (LABEL_W + num_slots * (TILE + PAD) + PAD,
            TITLE_H + num_outfits * (TILE + PAD) + PAD)


def _tile(datum, cate, item):
    try:
        img = datum.load_image(cate, int(item))
    except (DataError, OSError, ValueError) as err:  # drawn as a grey tile, named in the log
        LOGGER.warning("outfit grid: image of item %d (category %d) unreadable: %s", item, cate, err)
        return Image.new("RGB", (TILE, TILE), (160, 160, 160))
    img.thumbnail((TILE, TILE))
    tile = Image.new("RGB", (TILE, TILE), (255, 255, 255))
    tile.paste(img, ((TILE - img.width) // 2, (TILE - img.height) // 2))
    return tile


def draw_outfit_grid(path, datum, cate_map, outfits, user, scores, labels):
    """Write the grid PNG atomically; returns its path."""
    check_writable(path, "outfit grid")
    width, height = grid_size(len(outfits), len(cate_map))
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, 6), "user %d: top-%d outfits (binary score)" % (user, len(outfits)), fill=(0, 0, 0))
    for row, (outfit, score, label) in enumerate(zip(outfits, scores, labels)):
        y = TITLE_H + row * (TILE + PAD) + PAD
        draw.text((PAD, y + TILE // 2 - 12), "#%d  %.3f" % (row + 1, score), fill=(0, 0, 0))
        if label:
            draw.text((PAD, y + TILE // 2 + 4), "positive", fill=(0, 128, 0))
        for k, (item, cate) in enumerate(zip(fill_second_top(outfit), cate_map)):
            sheet.paste(_tile(datum, cate, item), (LABEL_W + k * (TILE + PAD) + PAD, y))
    with atomic_open(path, "wb") as f:
        sheet.save(f, format="PNG")
    return path
