"""Training history meters, visdom line plots and TensorBoard scalars (upstream utils/tracer.py, utils/meter.py).

visdom: the same three windows and calls as upstream when a server answers; with no
server, one warning and training goes on. Every plotted point is also a TensorBoard
scalar named "<group>/<key>" (e.g. train/loss, test/binary_auc).
"""
import logging
import socket
import warnings
from collections import deque
from urllib.parse import urlparse

import numpy as np

LOGGER = logging.getLogger(__name__)


class AvgMeter(object):
    """Moving average over the last `win_size` values."""

    def __init__(self, win_size=50):
        self.x, self.y = [], []
        self.val = np.nan
        self._queue = deque(maxlen=win_size)
        self.win_size = win_size

    @property
    def avg(self):
        return sum(self._queue) / len(self._queue) if self._queue else np.nan

    def update(self, x, y, **kwargs):
        self.x.append(x)
        self.y.append(y)
        self._queue.append(y)
        self.val = y

    def state_dict(self):
        return dict(x=self.x, y=self.y, val=self.val, queue=list(self._queue))

    def load_state_dict(self, state):
        self.x, self.y, self.val = list(state["x"]), list(state["y"]), state["val"]
        self._queue = deque(state["queue"], maxlen=self.win_size)

    def __repr__(self):
        return "{:.4f} ({:.4f})".format(self.val, self.avg)


class GlobalMeter(object):
    """Weighted average of everything seen (test epochs)."""

    def __init__(self):
        self.x, self.y, self.weights = [], [], []
        self.val = np.nan
        self._cum_val = 0.0
        self._cum_weight = 0.0

    @property
    def avg(self):
        return self._cum_val / self._cum_weight if self._cum_weight else np.nan

    def update(self, x, val, weight=1):
        self.x.append(x)
        self.y.append(val)
        self.weights.append(weight)
        self.val = val
        self._cum_val += val * weight
        self._cum_weight += weight

    def state_dict(self):
        return dict(x=self.x, y=self.y, weights=self.weights, val=self.val,
                    cum_val=self._cum_val, cum_weight=self._cum_weight)

    def load_state_dict(self, state):
        self.x, self.y, self.weights = list(state["x"]), list(state["y"]), list(state["weights"])
        self.val, self._cum_val, self._cum_weight = state["val"], state["cum_val"], state["cum_weight"]

    def __repr__(self):
        return "{:.4f} ({:.4f})".format(self.val, self.avg)


def make_meter(win_size):
    return GlobalMeter() if win_size == 0 else AvgMeter(win_size)


class Tracer(object):
    def __init__(self, win_size):
        self.win_size = win_size
        self._history = dict()

    def get_history(self):
        return self._history

    def get_meter(self, key):
        return self._history.setdefault(key, make_meter(self.win_size))

    def update_history(self, x, data, **kwargs):
        for key, value in data.items():
            self.get_meter(key).update(x, value, **kwargs)

    def logging(self):
        for k, m in self._history.items():
            LOGGER.info("-------- %s: %s", k, m)


def connect_visdom(server, port, env):
    """A visdom client, or None (with one warning) when no server answers."""
    host = urlparse(server).hostname or "localhost"
    try:
        socket.create_connection((host, int(port)), timeout=1.0).close()
        reachable = True
    except OSError:
        reachable = False
    try:
        if not reachable:
            raise ConnectionError("no server")
        from visdom import Visdom  # optional and slow to import: only when a server answers

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vis = Visdom(server=server, port=port, env=env, raise_exceptions=False,
                         use_incoming_socket=False)
        if vis.check_connection(timeout_seconds=0):
            return vis
    except Exception as err:  # noqa: BLE001 -- plotting must never stop training
        LOGGER.debug("visdom client failed: %s", err)
    LOGGER.warning("visdom server %s:%s is not reachable; live plots are off "
                   "(start one with `python fhn/scripts/visdom_server.py`). "
                   "TensorBoard scalars are still written.", server, port)
    return None


class GroupPlotTracer(object):
    """Groups (train: 50-iteration moving averages, test: weighted averages) + plots."""

    def __init__(self, env="main", server="http://localhost", port=8097, tb=None,
                 use_visdom=True, **group_win_size):
        self._groups = {g: Tracer(s) for g, s in group_win_size.items()}
        self.vis = connect_visdom(server, port, env) if use_visdom else None
        self.tb = tb  # common.logger module (configured) or None
        self._registered_figures = dict()
        self._registered_lines = dict()
        self._figure_cfg = dict()

    def get_meter(self, group, key):
        return self._groups[group].get_meter(key)

    def register_figure(self, title, xlabel, ylabel, trace_dict):
        """One visdom line window with a NaN start point per legend (upstream tracer.py:148)."""
        for key in trace_dict:
            g, k = key.split(".")
            self.get_meter(g, k)
        legend = list(trace_dict.values())
        win = ylabel
        if self.vis is not None:
            opts = dict(title=title, xlabel=xlabel, ylabel=ylabel, legend=legend)
            win = self.vis.line(X=np.zeros(1), Y=np.ones((1, len(trace_dict))) * np.nan,
                                opts=opts) or ylabel
        self._figure_cfg[ylabel] = dict(title=title, xlabel=xlabel, ylabel=ylabel,
                                        trace_dict=trace_dict)
        self._registered_figures[win] = trace_dict
        for line in trace_dict:
            self._registered_lines[line] = win
        LOGGER.info("Registered lines (#%s)", win)
        return win

    def update_history(self, group, x, data, **kwargs):
        for key, value in data.items():
            self.get_meter(group, key).update(x, value, **kwargs)

    def update(self, group, x, data, **kwargs):
        self.update_history(group, x, data, **kwargs)
        self.update_trace(group, x, data.keys())

    def update_trace(self, group, x, keys):
        for key in keys:
            meter = self.get_meter(group, key)
            line = "{}.{}".format(group, key)
            win = self._registered_lines.get(line)
            if win is None:
                continue
            if self.tb is not None:
                self.tb.log_value("{}/{}".format(group, key), meter.avg, step=x)
            if self.vis is not None:
                legend = self._registered_figures[win][line]
                self.vis.line(X=np.array([x]), Y=np.array([meter.avg]), name=legend, win=win,
                              update="append", opts={"showlegend": True})

    def logging(self, group=None):
        if group:
            self._groups[group].logging()
        else:
            for name, tracer in self._groups.items():
                LOGGER.info("-------- Group: %s", name)
                tracer.logging()

    def state_dict(self):
        return {g: {k: (type(m).__name__, m.state_dict()) for k, m in t.get_history().items()}
                for g, t in self._groups.items()}

    def load_state_dict(self, state):
        """Restore the meters and re-draw every line (upstream tracer.py:184-207)."""
        for g, meters in state.items():
            for k, (_, mstate) in meters.items():
                self.get_meter(g, k).load_state_dict(mstate)
        if self.vis is None:
            return
        for line, win in self._registered_lines.items():
            g, k = line.split(".")
            meter = self.get_meter(g, k)
            if meter.x:
                self.vis.line(X=np.array(meter.x), Y=np.array(meter.y, dtype=float),
                              update="append", name=self._registered_figures[win][line],
                              win=win, opts={"showlegend": True})
