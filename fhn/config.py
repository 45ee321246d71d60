"""Dataset constants of Polyvore-U (upstream polyvore/config.py)."""
NumCate = 3
CateName = ["top", "bottom", "shoe"]
CateIdx = {"top": 0, "bottom": 1, "shoe": 2}

NumPhase = 3
Phase = ["train", "val", "test"]
PhaseIdx = {"train": 0, "val": 1, "test": 2}
