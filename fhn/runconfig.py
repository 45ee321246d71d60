"""run.py's configuration: the YAML file -> FashionParam with errors naming file, line and key,
and upstream's logging set-up (utils/__init__.py:config_log)."""
import logging
import os
import tempfile
from logging.config import dictConfig

import yaml

from common.errors import InputError
from fhn.param import FashionParam, unknown_keys


class UserError(InputError):
    """Bad configuration or missing input: printed as one line, exit status 2."""


def config_log(stream_level=None, file_level="INFO", log_file=None):
    """Stream + file logging in upstream's format (utils/__init__.py:config_log)."""
    if log_file is None:
        fd, log_file = tempfile.mkstemp()
        os.close(fd)
    folder = os.path.dirname(log_file)
    if folder and not os.path.isdir(folder):
        os.makedirs(folder, exist_ok=True)  # upstream needs the folder to exist
    handler_level = {"level": stream_level} if stream_level else {}
    dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"simple": {
            "format": "[%(levelname)s] - %(asctime)s - [%(name)s.%(funcName)s:%(lineno)d]: %(message)s",
            "datefmt": "%m-%d %H:%M:%S"}},
        "handlers": {
            "stream": dict({"class": "logging.StreamHandler", "formatter": "simple"}, **handler_level),
            "file": {"class": "logging.FileHandler", "level": file_level, "formatter": "simple",
                     "filename": log_file},
        },
        "root": {"level": "DEBUG", "handlers": ["stream", "file"]},
    })
    for noisy in ("PIL", "matplotlib", "urllib3", "websocket", "visdom", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return log_file


def _key_line(path, keys):
    """1-based line of the nested key `keys` in the YAML file (None if not found)."""
    try:
        with open(path) as f:
            node = yaml.compose(f)
        for key in keys:
            for k, v in node.value:
                if k.value == key:
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return None
        return line
    except Exception:  # noqa: BLE001
        return None


def load_config(path):
    if not path:
        raise UserError("--cfg FILE is required")
    if not os.path.isfile(path):
        raise UserError("config file not found: %s" % path)
    try:
        with open(path, encoding="utf-8") as f:
            kwargs = yaml.load(f, Loader=yaml.SafeLoader) or {}
    except yaml.YAMLError as err:
        raise UserError("%s: invalid YAML: %s" % (path, err))
    except UnicodeDecodeError as err:
        raise UserError("%s: not UTF-8 text (%s)" % (path, err.reason))
    if not isinstance(kwargs, dict):
        raise UserError("%s: expected a mapping of keys (data_param, net_param, ...), found %s"
                        % (path, type(kwargs).__name__))
    try:
        return FashionParam(**kwargs)
    except KeyError as err:
        for where in unknown_keys(kwargs):
            line = _key_line(path, where)
            raise UserError("%s:%s: unknown key %s (%s)" % (
                path, line if line else "?", ".".join(where), str(err).strip('"')))
        raise UserError("%s: %s" % (path, str(err).strip('"')))
    except (TypeError, ValueError, AssertionError) as err:
        raise UserError("%s: invalid value (%s)" % (path, err))
