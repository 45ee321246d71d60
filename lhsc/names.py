"""Image names (and picture paths) of a precomp split, from a Karpathy `dataset_*.json` or an
`id_mapping.json`, for predict.py's printed results and gallery."""
import json
import os

from lhsc.errors import LhscInputError

# SCAN's precomp splits in terms of Karpathy's: coco train = train + restval, testall = all 5000 test
KARPATHY_SPLITS = {'train': ('train', 'restval'), 'dev': ('val',), 'test': ('test',), 'testall': ('test',)}


def default_mapping(data_path, data_name):
    """<data_path>/<data_name>/id_mapping.json when it exists (the demo data ships one), else None."""
    path = os.path.join(data_path, data_name, 'id_mapping.json')
    return path if os.path.isfile(path) else None


def load_image_names(mapping, split, n_images, image_root=None):
    """[(name, picture path or None)] for the n_images of `split`, in the split's order.

    mapping: a Karpathy dataset_{flickr30k,coco}.json ({"images": [{"filename", "split", ...}]}) or an
    id_mapping.json: {split: [file, ...]} or a plain list of files, relative to image_root (default:
    the mapping's folder)."""
    try:
        with open(mapping, encoding='utf-8') as f:
            payload = json.load(f)
    except OSError as err:
        raise LhscInputError('%s: cannot read the image mapping (%s); pass a Karpathy dataset_*.json '
                             'or an id_mapping.json (--mapping)' % (mapping, err.strerror or err)) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise LhscInputError('%s: not a JSON image mapping (%s)' % (mapping, err)) from None
    root = image_root if image_root is not None else os.path.dirname(os.path.abspath(mapping))
    if isinstance(payload, dict) and 'images' in payload:  # Karpathy split file
        wanted = KARPATHY_SPLITS.get(split, (split,))
        files = [img.get('filename', str(img.get('imgid'))) for img in payload['images']
                 if img.get('split') in wanted]
        if split == 'test' and len(files) == 5000 and n_images == 1000:
            files = files[:1000]  # coco_precomp test = the first 1000 of the 5000 test images
        with_paths = image_root is not None
    else:
        files = payload.get(split) if isinstance(payload, dict) else payload
        with_paths = True
    if not isinstance(files, list) or len(files) != n_images:
        raise LhscInputError('%s: names %s images for the %s split, which has %d; pass the mapping of '
                             'this dataset' % (mapping, len(files) if isinstance(files, list) else 'no',
                                               split, n_images))
    return [(os.path.basename(str(name)), os.path.join(root, str(name)) if with_paths else None)
            for name in files]
