"""Training loop (upstream polyvore/solver/basicsovler.py + fashionsolver.py).

Per epoch: set the tanh scale, train on fresh negatives, test on the val loader, save
`{checkpoints}_latest.net` (bare state_dict, upstream format) and `_best.net` when
the val loss improves, step the scheduler. Port additions: `{checkpoints}_latest.solver`
(net, optimizer, scheduler, epoch, best scores, meters) for `resume`, AMP, DDP,
TensorBoard.
"""
import logging
import os
import warnings
from time import time

import numpy as np
import torch

from common import logger as tb_logger
from common.atomic import atomic_open
from common.checkpoint import load_checkpoint
from common.errors import InputError
from common.progress import progress
from common.runtime import autocast, make_grad_scaler, rng_state, set_rng_state, wrap_ddp
from common.safeio import NonFiniteError, all_finite, check_finite
from fhn import metrics
from fhn.fingerprint import item_lists, stamp
from fhn.model import load_weights, to_device
from fhn.tracer import GroupPlotTracer, Tracer

LOGGER = logging.getLogger(__name__)

OPTIMIZERS = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "Adamax": torch.optim.Adamax}
SCHEDULERS = {
    "StepLR": torch.optim.lr_scheduler.StepLR,
    "ReduceLROnPlateau": torch.optim.lr_scheduler.ReduceLROnPlateau,
}


class RankMetric(object):
    """Training-time val AUC/NDCG, with upstream's aggregation (quirk 7).

    Upstream (fashionnet.py:68-71) appends the scores of the *whole batch* to every
    user appearing in the batch, from a thread that may lag behind; here the same
    aggregation runs synchronously. Users without scores are skipped (upstream
    crashes on them). evaluate-rank does not use this.
    """

    def __init__(self, num_users):
        self.num_users = num_users
        self.reset()

    def reset(self):
        self._scores = [[[] for _ in range(self.num_users)] for _ in range(4)]

    def put(self, data):
        """data: fhn.model.PairScores of one batch."""
        uidx, scores = data.uidx, (data.posi, data.nega, data.posi_binary, data.nega_binary)
        for u in uidx:
            for n, score in enumerate(scores):
                self._scores[n][u].extend(score)

    def rank(self):
        users = [u for u in range(self.num_users) if self._scores[0][u]]
        if not users:
            return dict(auc=np.nan, binary_auc=np.nan, ndcg=np.nan, binary_ndcg=np.nan)
        s = [[self._scores[n][u] for u in users] for n in range(4)]
        return dict(
            auc=metrics.calc_AUC(s[0], s[1]),
            binary_auc=metrics.calc_AUC(s[2], s[3]),
            ndcg=metrics.calc_NDCG(s[0], s[1]),
            binary_ndcg=metrics.calc_NDCG(s[2], s[3]),
        )


class FashionNetSolver(object):
    def __init__(self, param, net, train_loader, test_loader, device, dist_info=None,
                 use_visdom=True, show_progress=True):
        torch.backends.cudnn.benchmark = True
        self.param = param
        self.net = net  # plain module (state_dict keys stay upstream's)
        self.device = device
        self.dist = dist_info
        self.is_main = dist_info is None or dist_info.is_main
        self.model = wrap_ddp(net, dist_info) if dist_info is not None else net
        self.num_users = net.param.num_users
        self.best_acc = -np.inf
        self.best_loss = np.inf
        self.loader = dict(train=train_loader, test=test_loader)
        self.show_progress = show_progress
        self.iter = 0
        self.last_epoch = -1
        self.rank_metric = RankMetric(self.num_users)
        self.amp = bool(param.amp)
        self.scaler = make_grad_scaler(device, self.amp)
        self.init_optimizer(param.optim_param)
        tb = None
        logdir = param.tb_logdir if param.tb_logdir is not None else param.checkpoints + "_tb"
        if logdir and self.is_main:
            tb_logger.configure(logdir)
            tb = tb_logger
        self.tracer = GroupPlotTracer(param.visdom_env, param.visdom_server, param.visdom_port,
                                      tb=tb, use_visdom=self.is_main, train=50, test=1)
        for key, trace_dict in net.tracer.items():
            self.tracer.register_figure(title=param.visdom_title, xlabel="iteration",
                                        ylabel=key, trace_dict=trace_dict)

    def init_optimizer(self, optim_param):
        """One param group per top-level child (registration order) with its lr / wd."""
        groups = optim_param.groups
        children = list(self.net.children())
        if len(groups) == 1:
            groups = groups * len(children)
        if len(children) != len(groups):
            raise ValueError(
                "solver_param.optim_param: %d learning rates / weight decays given, but the "
                "net has %d parameter groups (%s)" % (len(groups), len(children),
                                                      ", ".join(self.net._modules)))
        param_groups = []
        for child, group in zip(children, groups):
            param_group = {"params": list(child.parameters())}
            param_group.update(group)
            param_groups.append(param_group)
        self.optimizer = OPTIMIZERS[optim_param.name](param_groups, **optim_param.grad_param)
        self.ReduceLROnPlateau = optim_param.lr_scheduler == "ReduceLROnPlateau"
        # quirk 8/14: the raw scheduler_param (Plateau in its default mode "min"); None
        # crashes upstream; here StepLR then gets upstream's documented defaults (30, 0.1)
        scheduler_param = dict(optim_param.scheduler_param or {})
        if optim_param.scheduler_param is None and optim_param.lr_scheduler == "StepLR":
            scheduler_param = dict(optim_param.lr_param)
        self.lr_scheduler = SCHEDULERS[optim_param.lr_scheduler](self.optimizer, **scheduler_param)

    def adjust_before_epoch(self, epoch):
        if self.param.increase_hard:
            self.loader["train"].set_prob_hard(pow(epoch / self.param.epochs, 0.5))
        self.net.set_scale(pow(epoch * self.param.gamma + 1, 0.5))

    def gather_loss(self, losses, backward=False, where="a step"):
        """Weighted total loss; a non-finite one stops the run before the optimizer steps."""
        loss = 0.0
        results = {}
        for name, value in losses.items():
            weight = self.net.loss_weight[name]
            value = value.float().mean()
            results[name] = value.item()
            if weight:
                loss += value * weight
        results["loss"] = check_finite(loss.item(), where)
        if backward:
            self.optimizer.zero_grad()
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return results

    @staticmethod
    def gather_accuracy(accuracy):
        return {k: v.sum().item() / v.numel() for k, v in accuracy.items()}

    def step_batch(self, inputs):
        with autocast(self.device, self.amp):
            return self.model(*inputs)

    def run(self):
        while self.last_epoch < self.param.epochs - 1:
            time_start = time()
            self.step()
            LOGGER.info(f"epoch: {self.last_epoch}, time cost: {time() - time_start}s.")

    def step(self, epoch=None):
        if epoch is None:
            epoch = self.last_epoch + 1
        self.adjust_before_epoch(epoch)
        sampler = getattr(self.loader["train"], "sampler", None)
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        self.trainOneEpoch(epoch)
        result = self.testOneEpoch(epoch)
        loss, acc = result["loss"], result["accuracy"]
        self.save_net("latest")
        if loss < self.best_loss:
            self.best_loss = loss
            self.best_acc = acc
            self.save_net("best")
            LOGGER.info("Best model:")
            for k, v in result.items():
                LOGGER.info("-------- %s: %.3f", k, v)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # epoch argument of StepLR.step is deprecated
            if self.ReduceLROnPlateau:
                self.lr_scheduler.step(-loss)
            else:
                # closed form base*gamma^(epoch//step) set after epoch `epoch` (one late)
                self.lr_scheduler.step(epoch)
        self.last_epoch = epoch
        self.save_solver("latest")
        return result

    def trainOneEpoch(self, epoch):
        self.model.train()
        phase = "train"
        loader = self.loader[phase].make_nega()
        msg = "Train - Epoch[{}](%d): [%d]/[{}]:".format(epoch, loader.num_batch)
        latest_time = time()
        results = {}
        bar = progress(loader, desc="train epoch %d" % epoch, total=loader.num_batch,
                       enabled=self.show_progress and self.is_main)
        for idx, inputs in enumerate(bar):
            inputv = to_device(inputs, self.device)
            data_time = time() - latest_time
            loss_, accuracy_ = self.step_batch(inputv)
            loss = self.gather_loss(loss_, backward=True,
                                    where="epoch %d step %d (iteration %d)" % (epoch, idx, self.iter))
            accuracy = self.gather_accuracy(accuracy_)
            results = dict(data_time=data_time, batch_time=time() - latest_time)
            results.update(loss)
            results.update(accuracy)
            self.tracer.update_history(group=phase, x=self.iter, data=results)
            if self.iter % self.param.display == 0 and self.is_main:
                LOGGER.info(msg, self.iter, idx)
                self.tracer.update_trace(group=phase, x=self.iter, keys=results.keys())
                self.tracer.logging(phase)
                self.net.debug()
            self.iter += 1
            latest_time = time()
        if self.is_main:
            LOGGER.info(msg, self.iter, loader.num_batch - 1)
            self.tracer.logging(phase)
            self.tracer.update_trace(group=phase, x=self.iter, keys=results.keys())

    def testOneEpoch(self, epoch=None):
        if epoch is None:
            epoch = self.last_epoch
        self.model.eval()
        phase = "test"
        latest_time = time()
        tracer = Tracer(win_size=0)
        loader = self.loader[phase].make_nega()
        msg = "Epoch[{}]:Test [%d]/[{}]".format(epoch, loader.num_batch)
        self.rank_metric.reset()
        bar = progress(loader, desc="val epoch %d" % epoch, total=loader.num_batch,
                       enabled=self.show_progress and self.is_main)
        for idx, inputs in enumerate(bar):
            inputv = to_device(inputs, self.device)
            batch_size = inputs[-1].numel()
            data_time = time() - latest_time
            with torch.no_grad():
                # the plain net: every rank evaluates the whole val split
                with autocast(self.device, self.amp):
                    loss_, accuracy_, pair_scores = self.net.forward_with_scores(*inputv)
                self.rank_metric.put(pair_scores)
                loss = self.gather_loss(loss_, backward=False,
                                        where="validation of epoch %d, batch %d" % (epoch, idx))
                accuracy = self.gather_accuracy(accuracy_)
            data = dict(data_time=data_time, batch_time=time() - latest_time)
            latest_time = time()
            data.update(loss)
            data.update(accuracy)
            tracer.update_history(self.iter, data, weight=batch_size)
            LOGGER.info(msg, idx)
            tracer.logging()
        results = {k: v.avg for k, v in tracer.get_history().items()}
        results.update(self.rank_metric.rank())
        if self.is_main:
            self.tracer.update(phase, self.iter, results)
            LOGGER.info("Epoch[%d] Average:", epoch)
            self.tracer.logging(phase)
        return results

    # ----- checkpoints -------------------------------------------------------------
    def format_filepath(self, label, suffix):
        return self.param.checkpoints + "_" + label + "." + suffix

    def _save(self, state, path):
        """torch.save through an atomic write; refuses non-finite weights."""
        if not all_finite(state):
            raise NonFiniteError("%s: not saved, the weights hold NaN/inf values (epoch %d); lower "
                                 "the learning rate" % (path, self.last_epoch))
        with atomic_open(path, "wb") as f:
            torch.save(state, f)

    def save_net(self, label):
        if not self.is_main:
            return
        path = self.format_filepath(label, "net")
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        LOGGER.info("Save net state to %s", path)
        self._save(stamp(self.net.state_dict(), self.loader["train"].dataset.param), path)

    def save_solver(self, label):
        """Everything `resume` needs (upstream's save_solver was never called, quirk 10)."""
        if not self.is_main or not self.param.save_solver:
            return
        state = {
            "net": stamp(self.net.state_dict(), self.loader["train"].dataset.param),
            "optim": self.optimizer.state_dict(),
            "scheduler": self.lr_scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "tracer": self.tracer.state_dict(),
            "state": dict(best_loss=float(self.best_loss), best_acc=float(self.best_acc),
                          iter=self.iter, last_epoch=self.last_epoch),
            "item_fingerprint": item_lists(self.loader["train"].dataset.param)[0],
            "rng": rng_state(),
        }
        path = self.format_filepath(label, "solver")
        LOGGER.info("Save solver state to %s", path)
        self._save(state, path)

    def resume(self, file):
        """Restore net, optimizer, scheduler, epoch, best scores and meters."""
        LOGGER.info("Resuming training from %s", file)
        state = load_checkpoint(file)
        if not isinstance(state, dict) or "optim" not in state:
            raise InputError("%s: not a solver state file (expected the *_latest.solver file "
                             "written by training)" % file)
        saved = state.get("item_fingerprint")
        if saved is not None and saved != item_lists(self.loader["train"].dataset.param)[0]:
            raise InputError("%s: written for other image lists than %s; resume with the data set "
                             "it was trained on" % (file, self.loader["train"].dataset.param.data_dir))
        load_weights(self.net, state["net"], file)
        self.optimizer.load_state_dict(state["optim"])
        self.lr_scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        for key, value in state["state"].items():
            setattr(self, key, value)
        self.tracer.load_state_dict(state.get("tracer", {}))
        rng = state.get("rng")
        if rng is not None:
            set_rng_state(rng)  # also reads the older layout (numpy keys beside numpy_pos/numpy_gauss)
        # the tanh scale is a buffer restored with the net; set_scale runs again next epoch
        LOGGER.info("Resumed at epoch %d (iteration %d, best loss %.4f)",
                    self.last_epoch, self.iter, self.best_loss)
