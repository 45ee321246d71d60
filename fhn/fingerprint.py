"""Item-list fingerprints inside the checkpoints the port writes.

A `*.net` stays upstream's bare state_dict (same keys, loads in upstream's code); the
fingerprint of the image lists the net was trained on rides in the state_dict's
`_metadata["fhn"]`, which torch saves with it and load_state_dict ignores. Evaluation with
other image lists is an error; for a checkpoint without it (upstream's released models) only
the layer sizes can be checked, and the run says so.
"""
import logging
import os

from common.errors import InputError
from common.safeio import fingerprint, read_text_lines

LOGGER = logging.getLogger(__name__)

KEY = "fhn"


def item_lists(data_param):
    """(fingerprint, sizes) of the data set's image lists (top, bottom, shoe)."""
    names, sizes = [], []
    for cate, path in enumerate(data_param.image_list_fn):
        lines = read_text_lines(path, what="image list")
        names.extend("%d/%s" % (cate, name) for name in lines)
        sizes.append(len(lines))
    return fingerprint(names), sizes


def stamp(state_dict, data_param):
    """Record the training image lists in `state_dict` (returned, for chaining)."""
    digest, sizes = item_lists(data_param)
    state_dict._metadata[KEY] = dict(item_fingerprint=digest, num_items=sizes,
                                     data_set=data_param.data_set)
    return state_dict


def saved_fingerprint(state_dict):
    return (getattr(state_dict, "_metadata", None) or {}).get(KEY)


def check_item_fingerprint(state_dict, checkpoint, data_param, cold_start=False):
    """Raise InputError when `checkpoint` was trained on other image lists than `data_param`'s."""
    saved = saved_fingerprint(state_dict)
    if not saved:
        LOGGER.info("%s has no item-list fingerprint (not written by this port): only the layer "
                    "sizes were checked, not that the image lists are the training ones", checkpoint)
        return
    digest, sizes = item_lists(data_param)
    if digest == saved.get("item_fingerprint"):
        return
    if cold_start:
        LOGGER.info("%s: trained on other image lists (%s); expected for cold start",
                    checkpoint, saved.get("data_set"))
        return
    raise InputError("%s: the net was trained on other image lists (%s, %s items) than those in %s "
                     "(%s, %s items); item ids would point at other images. Evaluate with the "
                     "training data set's image_list_* files" % (
                         checkpoint, saved.get("data_set"), saved.get("num_items"),
                         os.path.dirname(data_param.image_list_fn[0]), data_param.data_set, sizes))
