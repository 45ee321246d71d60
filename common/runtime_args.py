"""--device/--seed/--deterministic/--amp flags, in a module without torch so `--help` stays fast."""


def add_runtime_args(parser, device_default='auto'):
    """Add --device/--seed/--deterministic/--amp unless the parser already defines them."""
    existing = {opt for action in parser._actions for opt in action.option_strings}
    if '--device' not in existing:
        parser.add_argument('--device', default=device_default,
                            help='auto (CUDA when available), cpu, cuda or cuda:N')
    if '--seed' not in existing:
        parser.add_argument('--seed', default=None, type=int, help='seed python, numpy and torch')
    if '--deterministic' not in existing:
        parser.add_argument('--deterministic', action='store_true',
                            help='use deterministic algorithms (slower; errors on ops without one)')
    if '--amp' not in existing:
        parser.add_argument('--amp', action='store_true',
                            help='mixed precision on CUDA (changes numerics; no-op on CPU)')
    return parser
