"""Command-line options of the avas entry scripts, kept free of torch so that `--help` is fast."""
from common.errors import InputError
from common.progress import add_progress_arg
from common.runtime_args import add_runtime_args

# local_eval_test.py's defaults (spec of AIS; the train file is listed but never iterated)
DEFAULT_INDEX_FILES = ('data/dwd_mml_train_dataset_1007_urls_train_with_poi_tuomin.csv,'
                       'data/dwd_mml_train_dataset_1007_urls_val_with_poi_tuomin.csv,'
                       'dwd_mml_train_dataset_1007_urls_train_with_poi_tuomin.csv')
ALIGN_PTH = ('youyi/models/align_相关性模型权重/align_with_mkg_0106/'
             'commodity_poi_mml_20211221_with_MKG_withMKG_iteration_200000_0.4215_0.407_0.018.pth')
RANKING_MODEL_NAME = 'shoucai_siamese_train_concat_poi'
RANKING_CKPT = 'shoucai_siamese_train_concat_poi_020_0.6520.ckpt'
ALIGN_MODEL_NAME = 'commodity_poi_mml_with_MKG'


def add_common_args(p, strict_help='a corrupt or missing image is an error (default: skipped and counted)'):
    """Flags every avas script that reads images shares: --strict, --no_progress, runtime flags."""
    p.add_argument('--strict', action='store_true', help=strict_help)
    add_progress_arg(p)
    return add_runtime_args(p)


def add_upstream_ranking_args(p):
    """local_eval_test.py's argparse, every flag and default as shipped (many unused, spec §2.1)."""
    p.add_argument("--tables", default="", type=str, help="unused (ODPS)")
    p.add_argument("--index_files", default=DEFAULT_INDEX_FILES, type=str,
                   help="train,val,test ranking CSVs; val is evaluated (train/test unused here)")
    p.add_argument("--outputs", default="", type=str, help="unused (ODPS)")
    p.add_argument("--task_name", default="shoucai_siamese", type=str, help="run name")
    p.add_argument("--note_txt", default="", type=str, help="unused")
    p.add_argument("--save_test", default=0, type=int, help="unused")
    p.add_argument("--batch_size", default=16, type=int, help="pairs per batch")
    p.add_argument("--epoch", default=32, type=int, help="training epochs (train_ranking.py)")
    p.add_argument("--eval_per_step", default=32, type=int, help="unused by upstream")
    p.add_argument("--margin", default=0.5, type=float, help="MarginRankingLoss margin (unused)")
    p.add_argument("--aug", default=1, type=int, help="train-mode augmentation (train_ranking.py)")
    p.add_argument("--lr", default=1e-3, type=float, help="learning rate (train_ranking.py)")
    p.add_argument("--log", default=0, type=int, help="extra per-pair prints")
    p.add_argument("--softmax", default=0, type=int, help="1: softmax over (s1, s2) before the loss")
    p.add_argument("--freeze", default=1, type=int, help="freeze the ALIGN inside the ranking model")
    p.add_argument("--use_norm_vector", default=1, type=int,
                   help="1: L2-normalised embeddings + ..._imgs_avg10_vector.npy; 0: raw + ..._wo_norm.npy")
    p.add_argument("--align_pth", default=ALIGN_PTH, type=str, help="unused (OSS path of the ALIGN)")
    return p


def add_ranking_port_args(p):
    """The port's ranking flags (files that upstream read from the current directory, outputs)."""
    p.add_argument('--align_ckpt', default='align_model.pth', help='ALIGN checkpoint (align_model.pth)')
    p.add_argument('--ranking_ckpt', default=RANKING_CKPT, help='bare Multimodal_Model state_dict')
    p.add_argument('--bert_path', default='bert-base-chinese', help='folder with config.json + vocab.txt')
    p.add_argument('--poi_tables', default='.', help='folder holding the POI side tables (.npz or upstream .npy)')
    p.add_argument('--image_root', default='oss_images', help='local images named <basename(URL)>')
    p.add_argument('--text_batch_size', default=64, type=int,
                   help='texts per padded BERT batch (1 = upstream one-string-per-call path)')
    p.add_argument('--num_workers', default=0, type=int)
    p.add_argument('--out_json', default=None, help='write dev_accuracy/dev_loss/roc_auc/n_pairs/n_dropped')
    p.add_argument('--out_scores', default=None, help='save the (n_pairs, 2) s1/s2 matrix (.npy)')
    return add_common_args(p, 'a pair with a missing/unreadable image is an error (default: dropped and counted)')


def split_index_files(index_files):
    """--index_files 'train,val,test' -> the three paths (upstream indexes them positionally)."""
    parts = index_files.split(',')
    if len(parts) != 3:
        raise InputError('--index_files: needs 3 comma-separated paths (train,val,test), got %d; '
                         'write unused ones as "unused"' % len(parts))
    return parts
