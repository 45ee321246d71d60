"""Configuration classes: one YAML file -> FashionParam (upstream polyvore/param.py).

Every upstream key keeps its name and default. Keys added by the port (all optional,
defaults reproduce upstream behaviour) are marked "port:" below.
"""
import copy
import logging
import os
import warnings
from datetime import datetime

from fhn import config as cfg

NO_WEIGHTED_HASH = 0
WEIGHTED_HASH_U = 1
WEIGHTED_HASH_I = 2
WEIGHTED_HASH_BOTH = 3

_VAR_LENGTH_DATA = ["tuples_519", "tuples_32"]
_VAR_LENGTH_USER = [519, 32]

LOGGER = logging.getLogger(__name__)


def format_display(opt, num=1):
    """Hierarchical text of a param dict (upstream param.py:36-63)."""
    indent = "  " * num
    string = ""
    for k, v in opt.items():
        if v is None:
            continue
        if isinstance(v, _Param):
            string += "{}{} : {{\n".format(indent, k)
            string += format_display(v.get_params(), num + 1)
            string += "{}}},\n".format(indent)
        elif isinstance(v, dict):
            string += "{}{} : {{\n".format(indent, k)
            string += format_display(v, num + 1)
            string += "{}}},\n".format(indent)
        elif isinstance(v, list):
            string += "{}{} : ".format(indent, k)
            one_line = ",".join(map(str, v))
            if len(one_line) < 87:
                string += "[" + one_line + "]\n"
            else:
                prefix = "  " + indent
                string += "[\n"
                for i in v:
                    string += "{}{},\n".format(prefix, i)
                string += "{}]\n".format(indent)
        else:
            string += "{}{} : {},\n".format(indent, k, v)
    return string


class _Param(object):
    """Base class: `default` lists the configurable keys with their defaults.

    Quirk fixed (upstream param.py:95,114): upstream updates the *class-level*
    `default` dict, so a later instance inherits values given to an earlier one.
    Here every instance gets its own copy; with the shipped configs the values are
    the same (see fhn/README.md).
    """

    default = {}
    infer = []

    def __init__(self, **kwargs):
        unknown = kwargs.keys() - type(self).default.keys()
        if unknown:
            raise KeyError(
                "Keyword(s) {} is(are) not in configurable list: {}".format(
                    sorted(unknown), list(type(self).default.keys())
                )
            )
        object.__setattr__(self, "default", dict(type(self).default))
        self.default.update(kwargs)
        for attr, value in self.default.items():
            setattr(self, attr, value)
        self.setup()

    def setup(self):
        pass

    def replace(self, **changes):
        """A copy with `changes` applied; this object (a caller's config) stays as it is."""
        new = copy.copy(self)
        object.__setattr__(new, "default", dict(self.default))
        for name, value in changes.items():
            setattr(new, name, value)
        return new

    def get_params(self):
        params = dict(self.default)
        for key in self.infer:
            params[key] = getattr(self, key)
        return params

    def __setattr__(self, name, value):
        if name in self.default:
            self.default[name] = value
        return super().__setattr__(name, value)

    def __str__(self):
        return type(self).__name__ + ":\n" + format_display(self.get_params(), 1)

    def __repr__(self):
        return "ParamClass(# Configrations: %s)" % len(self.default)


class _DataPaths(object):
    """File locations shared by DataParam and FITBDataParam."""

    def _setup_length(self):
        self.image_root = self.image_root or self.data_root
        self.variable_length = self.data_set in _VAR_LENGTH_DATA
        if self.variable_length:
            # regard the variable-length outfits as four-category
            self.cate_map = [0, 0, 1, 2]
            self.cate_name = ["top", "top", "bottom", "shoe"]
        else:
            self.cate_map = [0, 1, 2]
            self.cate_name = ["top", "bottom", "shoe"]

    @property
    def image_dir(self):
        folder = "saliency" if self.saliency_image else "291x291"
        return os.path.join(self.image_root, "images", folder)

    @property
    def lmdb_dir(self):
        return os.path.join(self.image_root, "images/lmdb")

    @property
    def data_dir(self):
        return os.path.join(self.data_root, self.data_set)

    @property
    def semantic_fn(self):
        return os.path.join(self.data_root, "sentence_vector/semantic.pkl")

    @property
    def image_list_fn(self):
        return [os.path.join(self.data_dir, self.list_fmt.format(p)) for p in cfg.CateName]

    @property
    def posi_fn(self):
        return os.path.join(self.data_dir, "tuples_{}_posi".format(self.phase))


class FITBDataParam(_DataPaths, _Param):
    default = dict(
        phase="test",
        data_set="tuples_630",
        data_root="data/polyvore",
        list_fmt="image_list_{}",
        use_semantic=False,
        use_visual=True,
        image_root=None,
        saliency_image=False,
        image_size=291,
        use_lmdb=True,
        num_workers=8,
        num_cand=4,  # number of candidates, which equals to batch size
        # port: questions with missing images / sentence vectors are left out and counted;
        # True makes that an error (run.py --strict sets it)
        strict_images=False,
    )
    infer = ["data_dir", "image_list_fn", "image_dir", "posi_fn", "fitb_fn", "semantic_fn"]

    def setup(self):
        self._setup_length()
        # one question per batch: never shuffle
        self.shuffle = False
        if not (self.use_semantic or self.use_visual):
            warnings.warn("Neither semantic nor visual is selected! ", RuntimeWarning)

    @property
    def fitb_fn(self):
        return os.path.join(self.data_dir, "fill_in_blank_{}".format(self.phase))


class DataParam(_DataPaths, _Param):
    """Parameters for one split of the outfit data."""

    default = dict(
        phase="train",
        data_set="tuples_630",
        data_mode="PairWise",
        nega_mode="RandomOnline",
        data_root="data/polyvore",
        list_fmt="image_list_{}",
        use_semantic=False,
        use_visual=True,
        image_root=None,
        saliency_image=False,
        image_size=291,
        use_lmdb=True,
        batch_size=64,
        num_workers=8,
        shuffle=None,
        fsl=None,
        # port: outfits whose images / sentence vectors are missing are left out and counted;
        # True makes that an error (run.py --strict sets it)
        strict_images=False,
    )
    infer = ["image_dir", "data_dir", "posi_fn", "nega_fn", "image_list_fn", "semantic_fn"]

    def setup(self):
        if self.fsl:
            self.data_set += "_fsl"
        self._setup_length()
        if self.shuffle is None:
            self.shuffle = self.phase == "train"
        if (not self.use_semantic) and (not self.use_visual):
            warnings.warn("Neither semantic nor visual is selected! ", RuntimeWarning)

    @property
    def nega_fn(self):
        fmt = "tuples_{}_nega_hard" if self.nega_mode == "HardFix" else "tuples_{}_nega"
        return os.path.join(self.data_dir, fmt.format(self.phase))

    @property
    def hard(self):
        return self.nega_mode in ["HardFix", "HardOnline"]


class NetParam(_Param):
    """Parameters for the net."""

    default = dict(
        name="FashionNet",
        num_users=630,
        dim=128,
        single=False,
        binary01=False,
        triplet=False,  # unused upstream
        scale_tanh=True,
        backbone="alexnet",
        share_user=False,
        without_binary=False,
        zero_uterm=False,
        zero_iterm=False,
        use_semantic=False,
        use_visual=False,
        hash_types=0,
        margin=None,
        debug=False,  # unused upstream
        big_data_param=None,
        small_data_param=None,
        data_file=None,
        gpus=None,
        # port: ImageNet weights of the backbone, read from a local file only
        # (None -> upstream's location: $TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth
        # for alexnet, weights/resnet{N}.tar for the GN ResNets). Ignored when a
        # checkpoint is loaded (load_trained / resume).
        backbone_weights=None,
        # port: False -> random backbone init (no ImageNet weights), e.g. for the demo
        pretrained=True,
        # port: ColdStart reads the big-dataset user codes from this extract-features
        # file (upstream hard-codes it, fashionnet.py:595)
        big_feature_file="features/fashion_hash_net_vse_t3_u630.npz",
    )

    def setup(self):
        if self.use_semantic and self.use_visual:
            self.margin = self.margin or 0.1
        if self.num_users in _VAR_LENGTH_USER:
            self.cate_map = [0, 0, 1, 2]
            self.variable_length = True
            self.cate_name = ["top", "top", "bottom", "shoe"]
        else:
            self.cate_map = [0, 1, 2]
            self.variable_length = False
            self.cate_name = ["top", "bottom", "shoe"]
        if self.big_data_param:
            self.big_data_param = DataParam(**self.big_data_param)
        if self.small_data_param:
            self.small_data_param = DataParam(**self.small_data_param)


class OptimParam(_Param):
    default = dict(
        name="SGD",
        lr=1e-3,
        weight_decay=0,
        grad_param=None,
        lr_scheduler="StepLR",
        scheduler_param=None,
    )
    infer = ["groups"]

    def setup(self):
        self.groups = self._param_groups(self.lr, self.weight_decay)
        if self.name == "SGD":
            self.grad_param = dict(momentum=(self.grad_param or {}).get("momentum", 0.9))
        elif self.name in ["Adam", "Adamax"]:
            param = self.grad_param or {}
            self.grad_param = dict(
                betas=tuple(param.get("betas", (0.9, 0.999))), eps=param.get("eps", 1e-8)
            )
        else:
            raise KeyError("optim_param.name must be SGD, Adam or Adamax, got %r" % self.name)
        param = self.scheduler_param or {}
        # upstream computes lr_param (param.py:416-438) but never uses it: the scheduler
        # gets the raw scheduler_param (quirk 14); kept for display only
        if self.lr_scheduler == "StepLR":
            self.lr_param = dict(
                step_size=param.get("step_size", 30), gamma=param.get("gamma", 0.1)
            )
        elif self.lr_scheduler == "ReduceLROnPlateau":
            self.lr_param = dict(
                mode="max",
                cooldown=param.get("cooldown", 10),
                factor=param.get("factor", 0.1),
                patience=param.get("patience", 10),
                threshold=param.get("threshold", 0.0001),
                verbose=True,
            )
        else:
            raise KeyError(
                "optim_param.lr_scheduler must be StepLR or ReduceLROnPlateau, got %r"
                % self.lr_scheduler
            )

    @staticmethod
    def _param_groups(lr, weight_decay):
        lrs = lr if isinstance(lr, list) else [lr]
        wds = weight_decay if isinstance(weight_decay, list) else [weight_decay]
        if len(lrs) == 1 and len(wds) > 1:
            lrs = lrs * len(wds)
        elif len(lrs) > 1 and len(wds) == 1:
            wds = wds * len(lrs)
        elif len(lrs) > 1 and len(wds) > 1:
            assert len(lrs) == len(wds), "Number of learning rate doesn't match weight decay."
        return [dict(lr=a, weight_decay=b) for a, b in zip(lrs, wds)]


class SolverParam(_Param):
    """Parameters for training."""

    default = dict(
        name=None,
        gpus=None,
        gamma=0.1,
        visdom_env="main",
        checkpoints="./checkpoints",
        visdom_title="FHN",
        display=10,
        balance_loss=False,  # unused upstream
        increase_hard=False,  # no effect upstream (quirk 9)
        epochs=100,
        optim_param=None,
        # port: visdom server (upstream: Visdom() defaults)
        visdom_server="http://localhost",
        visdom_port=8097,
        # port: TensorBoard event folder (None -> "{checkpoints}_tb"; "" disables)
        tb_logdir=None,
        # port: mixed precision on CUDA (no-op on CPU)
        amp=False,
        # port: file written every epoch with net, optimizer, scheduler, epoch and best
        # scores for `resume` (None -> "{checkpoints}_latest.solver", upstream's name)
        save_solver=True,
    )

    def setup(self):
        self.optim_param = OptimParam(**(self.optim_param or dict()))

    def add_timestamp(self, timestamp=None):
        timestamp = timestamp or datetime.now().strftime("%m%d%H%M")
        self.visdom_title = self.visdom_title + "." + timestamp


class FashionParam(_Param):
    """Top-level configuration."""

    default = dict(
        data_param=None,
        train_data_param=None,
        test_data_param=None,
        fitb_data_param=None,
        net_param=None,
        solver_param=None,
        load_trained=None,
        log_file=None,
        log_level=None,
        result_file=None,
        result_dir=None,
        feature_file=None,
        resume=None,
        cold_start=None,
        gpus=None,
        # port: mixed precision for evaluation on CUDA
        amp=False,
    )

    def setup(self):
        if not (self.train_data_param is None and self.test_data_param is None):
            # merge rule (upstream param.py:497-498): the common data_param wins
            param = self.data_param or dict()
            train_param = dict(self.train_data_param or dict())
            test_param = dict(self.test_data_param or dict())
            train_param.update(param)
            test_param.update(param)
            self.train_data_param = DataParam(**train_param)
            self.test_data_param = DataParam(**test_param)
            self.data_param = None
        if self.data_param:
            self.data_param = DataParam(**self.data_param)
        if self.fitb_data_param:
            self.fitb_data_param = FITBDataParam(**self.fitb_data_param)
        if self.net_param:
            self.net_param = NetParam(**self.net_param)
        if self.solver_param:
            self.solver_param = SolverParam(**self.solver_param)
            self.gpus = self.solver_param.gpus


def unknown_keys(kwargs):
    """Paths (tuples) of keys in a YAML dict that no param class accepts."""
    sections = dict(
        data_param=DataParam, train_data_param=DataParam, test_data_param=DataParam,
        fitb_data_param=FITBDataParam, net_param=NetParam, solver_param=SolverParam,
    )
    out = [(k,) for k in kwargs if k not in FashionParam.default]
    for name, cls in sections.items():
        section = kwargs.get(name)
        if not isinstance(section, dict):
            continue
        out += [(name, k) for k in section if k not in cls.default]
        if name == "solver_param" and isinstance(section.get("optim_param"), dict):
            out += [(name, "optim_param", k) for k in section["optim_param"]
                    if k not in OptimParam.default]
        if name == "net_param":
            for sub in ("big_data_param", "small_data_param"):
                if isinstance(section.get(sub), dict):
                    out += [(name, sub, k) for k in section[sub] if k not in DataParam.default]
    return out


__all__ = ["FashionParam", "NetParam", "SolverParam", "DataParam", "FITBDataParam"]
