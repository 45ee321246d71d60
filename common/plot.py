"""Training curves from TensorBoard event files: one subplot per scalar tag, several runs overlaid.

    python -m common.plot RUN_DIR [RUN_DIR ...] --out curves.png

Every folder under each RUN_DIR that holds `events.out.tfevents.*` files is read (recursively);
its curves are labelled by the run (and the sub-folder, when a run has several).
"""
import argparse
import math
import os
import sys

if __package__ in (None, ''):  # run by path: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.atomic import atomic_open  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402

COLS = 3            # subplots per row
PANEL = (5.0, 3.2)  # inches per subplot
DPI = 100


def event_dirs(run_dir):
    """Folders under run_dir (itself included) that hold TensorBoard event files, sorted."""
    found = []
    for folder, subdirs, files in os.walk(run_dir):
        subdirs.sort()
        if any('tfevents' in name for name in files):
            found.append(folder)
    return found


def read_scalars(folder):
    """{tag: ([steps], [values])} of one event-file folder, in the order they were written."""
    # tensorboard is imported here, not at the top: `--help` must stay fast
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(folder, size_guidance={'scalars': 0})
    acc.Reload()
    return {tag: ([e.step for e in acc.Scalars(tag)], [e.value for e in acc.Scalars(tag)])
            for tag in acc.Tags().get('scalars', [])}


def collect(run_dirs):
    """[(label, {tag: (steps, values)})] for every event-file folder of every run dir."""
    runs = []
    for run_dir in run_dirs:
        if not os.path.isdir(run_dir):
            raise InputError('%s: not a folder; give the folder a training run wrote its logs to' % run_dir)
        name = os.path.basename(os.path.normpath(os.path.abspath(run_dir)))
        folders = event_dirs(run_dir)
        if not folders:
            raise InputError('%s: no TensorBoard event files (events.out.tfevents.*) under it; '
                             'give the folder of a training run (its --logger_name / log dir)' % run_dir)
        for folder in folders:
            rel = os.path.relpath(folder, run_dir)
            label = name if len(folders) == 1 else '%s/%s' % (name, rel)
            scalars = read_scalars(folder)
            if scalars:
                runs.append((label, scalars))
    if not runs:
        raise InputError('%s: the event files hold no scalars to plot' % ', '.join(run_dirs))
    return runs


def ordered_tags(runs):
    """Loss tags first, then the others alphabetically."""
    tags = sorted({tag for _, scalars in runs for tag in scalars})
    return sorted(tags, key=lambda tag: (0 if 'loss' in tag.lower() else 1, tag))


def figure_size(n_tags):
    """(width, height) in pixels of the PNG for n_tags subplots."""
    cols = min(COLS, n_tags)
    rows = math.ceil(n_tags / cols)
    return int(round(cols * PANEL[0] * DPI)), int(round(rows * PANEL[1] * DPI))


def plot_runs(run_dirs, out, title=None):
    """Draw every scalar tag of the runs into `out` (PNG, written atomically); returns the tags drawn."""
    runs = collect(run_dirs)
    tags = ordered_tags(runs)
    import matplotlib  # here: plotting is only needed once there is something to draw
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    cols = min(COLS, len(tags))
    rows = math.ceil(len(tags) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * PANEL[0], rows * PANEL[1]), dpi=DPI, squeeze=False)
    for ax, tag in zip(axes.flat, tags):
        for label, scalars in runs:
            if tag in scalars:
                steps, values = scalars[tag]
                ax.plot(steps, values, label=label, marker='.' if len(steps) < 30 else None)
        ax.set_title(tag, fontsize=10)
        ax.set_xlabel('step', fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tags):]:
        ax.axis('off')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_open(out, 'wb') as f:
        fig.savefig(f, format='png', dpi=DPI)
    plt.close(fig)
    return tags


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('run_dirs', nargs='+', metavar='RUN_DIR', help='folders with TensorBoard event files')
    parser.add_argument('--out', default='curves.png', help='PNG to write (default: curves.png)')
    parser.add_argument('--title', default=None, help='figure title')
    args = parser.parse_args(argv)
    from common.safeio import check_writable  # numpy: after parsing
    check_writable(args.out, '--out file')
    tags = plot_runs(args.run_dirs, args.out, args.title)
    print('wrote %s (%d curves: %s)' % (args.out, len(tags), ', '.join(tags)))
    return 0


if __name__ == '__main__':
    cli_main(main)
