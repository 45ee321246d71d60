"""Retrieval gallery: an HTML page (relative image paths, so the folder can move) and a PNG contact sheet.

    write_gallery(out_dir, title, rows) -> (out_dir/gallery.html, out_dir/gallery.png)

rows: [{'query': str, 'query_image': path or None,
        'results': [{'image': path or None, 'text': str or None, 'score': float, 'gt': bool, 'name': str}]}]
Images are copied under out_dir/images/ with safe unique names; an image that is missing or does not
decode is drawn as a placeholder (and named in the page) instead of failing the whole gallery.
"""
import html
import os
import re

from PIL import Image, ImageDraw, ImageFont

from common.atomic import atomic_copy, atomic_open
from common.safeio import BadImageError, open_image, write_text_atomic

THUMB = 128          # contact-sheet thumbnail box (pixels)
PAD = 6              # padding around a cell
TEXT_LINES = 3       # lines of text under each thumbnail
LINE_H = 14          # height of one text line
TITLE_H = 32         # band with the gallery title
ROW_HEAD_H = 22      # band with the query of a row
GT_COLOR = (22, 150, 60)
EDGE_COLOR = (190, 190, 190)


def sheet_size(n_rows, n_cols, thumb=THUMB):
    """(width, height) of the contact sheet for n_rows queries of n_cols cells (query image included)."""
    cell_w, cell_h = thumb + 2 * PAD, thumb + TEXT_LINES * LINE_H + 2 * PAD
    return max(n_cols, 1) * cell_w, TITLE_H + n_rows * (ROW_HEAD_H + cell_h)


def _safe_name(path):
    stem, ext = os.path.splitext(os.path.basename(path))
    stem = re.sub(r'[^A-Za-z0-9._-]+', '_', stem).strip('._')[:60] or 'image'
    ext = ext.lower() if re.fullmatch(r'\.[A-Za-z0-9]{1,5}', ext) else '.img'
    return stem + ext


class _Images:
    """Copies each distinct source image once under out_dir/images/ and keeps its decoded thumbnail."""

    def __init__(self, out_dir, thumb):
        self.out_dir, self.thumb = out_dir, thumb
        self.folder = os.path.join(out_dir, 'images')
        self.done = {}  # absolute source path -> (relative src or None, thumbnail or None, problem or None)

    def add(self, path):
        if not path:
            return None, None, None
        key = os.path.abspath(os.fspath(path))
        if key not in self.done:
            try:
                img = open_image(key)
            except BadImageError as err:
                self.done[key] = (None, None, str(err))
            else:
                img.thumbnail((self.thumb, self.thumb))
                rel = 'images/%03d_%s' % (len(self.done), _safe_name(key))
                atomic_copy(key, os.path.join(self.out_dir, rel))
                self.done[key] = (rel, img, None)
        return self.done[key]


def _cell_html(rel, problem, caption_lines, gt, text=None):
    cls = 'cell gt' if gt else 'cell'
    if rel:
        media = '<img src="%s" alt=""/>' % html.escape(rel, quote=True)
    elif text:
        media = '<div class="text">%s</div>' % html.escape(text)
    else:
        media = '<div class="missing">%s</div>' % html.escape(problem or 'no image')
    lines = ''.join('<div>%s</div>' % html.escape(line) for line in caption_lines)
    if rel and text:
        lines += '<div class="caption">%s</div>' % html.escape(text)
    return '<td class="%s">%s%s</td>' % (cls, media, lines)


STYLE = ('body{font-family:sans-serif;margin:16px}table{border-collapse:separate;border-spacing:6px}'
         'td.cell{vertical-align:top;width:170px;border:1px solid #bbb;padding:4px;font-size:12px}'
         'td.gt{border:4px solid #16963c}td.cell img{max-width:160px;max-height:160px;display:block}'
         '.text,.missing{width:160px;min-height:60px;background:#f4f4f4;padding:2px}'
         '.missing{color:#a00}.caption{color:#444}h2{font-size:16px;margin:18px 0 4px}')


def _wrap(draw, text, font, width, max_lines):
    """Greedy wrap at spaces; a word wider than a line (or text without spaces, e.g. Chinese) by characters."""
    lines, line = [], ''
    for word in re.findall(r'\S+\s*|\s+', str(text)):
        pieces = [word] if draw.textlength(word.rstrip(), font=font) <= width else list(word)
        for piece in pieces:
            if line and draw.textlength((line + piece).rstrip(), font=font) > width:
                lines.append(line.rstrip())
                line = piece.lstrip()
            else:
                line += piece
    if line.strip():
        lines.append(line.rstrip())
    return lines[:max_lines]


def write_gallery(out_dir, title, rows, thumb=THUMB):
    """Write out_dir/gallery.html and out_dir/gallery.png (both atomically); return their paths."""
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    images = _Images(out_dir, thumb)
    with_query_image = any(row.get('query_image') for row in rows)
    n_cols = int(with_query_image) + max([len(row['results']) for row in rows] or [0])
    width, height = sheet_size(len(rows), n_cols, thumb)
    sheet = Image.new('RGB', (width, height), 'white')
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=11)
    big = ImageFont.load_default(size=16)
    draw.text((PAD, 8), str(title), fill='black', font=big)
    cell_w, cell_h = thumb + 2 * PAD, thumb + TEXT_LINES * LINE_H + 2 * PAD

    body = ['<!DOCTYPE html>', '<html><head><meta charset="utf-8"/><title>%s</title><style>%s</style></head><body>'
            % (html.escape(str(title)), STYLE), '<h1>%s</h1>' % html.escape(str(title)),
            '<p>Green frame: ground truth. Scores as computed by the model (higher is better).</p>']
    for r, row in enumerate(rows):
        y0 = TITLE_H + r * (ROW_HEAD_H + cell_h)
        head = _wrap(draw, 'query: %s' % row['query'], font, width - 2 * PAD, 1)
        draw.text((PAD, y0 + 4), head[0], fill='black', font=font)
        cells, col = [], 0
        if with_query_image:
            rel, thumb_img, problem = images.add(row.get('query_image'))
            query_text = None if rel else str(row['query'])  # rows without a query image show its text
            cells.append(_cell_html(rel, problem, ['query'], False, query_text))
            _draw_cell(draw, sheet, font, 0, y0 + ROW_HEAD_H, thumb, thumb_img, query_text, ['query'], False)
            col = 1
        for k, res in enumerate(row['results'], 1):
            rel, thumb_img, problem = images.add(res.get('image'))
            gt = bool(res.get('gt'))
            lines = ['#%d %s' % (k, res.get('name', '')), 'score %.4f%s' % (float(res['score']), '  GT' if gt else '')]
            cells.append(_cell_html(rel, problem, lines, gt, res.get('text')))
            placeholder = res.get('text') or (problem and 'missing or unreadable image') or 'no image'
            _draw_cell(draw, sheet, font, (col + k - 1) * cell_w, y0 + ROW_HEAD_H, thumb, thumb_img,
                       placeholder, lines, gt)
        body.append('<h2>query: %s</h2>' % html.escape(str(row['query'])))
        body.append('<table><tr>%s</tr></table>' % ''.join(cells))
    body.append('</body></html>')

    html_path = os.path.join(out_dir, 'gallery.html')
    png_path = os.path.join(out_dir, 'gallery.png')
    write_text_atomic(html_path, '\n'.join(body) + '\n')
    with atomic_open(png_path, 'wb') as f:
        sheet.save(f, format='PNG', optimize=True)
    return html_path, png_path


def _draw_cell(draw, sheet, font, x, y, thumb, img, placeholder, lines, gt):
    box = (x + PAD - 2, y + PAD - 2, x + PAD + thumb + 1, y + PAD + thumb + 1)
    if img is not None:
        sheet.paste(img, (x + PAD + (thumb - img.width) // 2, y + PAD + (thumb - img.height) // 2))
    else:
        draw.rectangle(box, fill=(244, 244, 244))
        for i, line in enumerate(_wrap(draw, placeholder or '', font, thumb - 4, thumb // LINE_H)):
            draw.text((x + PAD + 2, y + PAD + 2 + i * LINE_H), line, fill=(60, 60, 60), font=font)
    draw.rectangle(box, outline=GT_COLOR if gt else EDGE_COLOR, width=4 if gt else 1)
    for i, line in enumerate(lines[:TEXT_LINES]):
        text = _wrap(draw, line, font, thumb + PAD, 1)
        draw.text((x + PAD, y + PAD + thumb + 4 + i * LINE_H), text[0] if text else '',
                  fill=GT_COLOR if gt and i == 1 else 'black', font=font)
