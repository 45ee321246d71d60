import glob

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from common import logger as tb_logger
from common.logger import AverageMeter, LogCollector


def test_log_value_writes_real_tensorboard_scalars(tmp_path):
    tb_logger.configure(str(tmp_path), flush_secs=1)
    for step in range(5):
        tb_logger.log_value('train/loss', 1.0 / (step + 1), step)
    tb_logger.log_value('lr', 0.0002, 3)
    tb_logger.close()
    assert glob.glob(str(tmp_path / 'events.out.tfevents.*'))
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert set(events.Tags()['scalars']) == {'train/loss', 'lr'}
    loss = events.Scalars('train/loss')
    assert [e.step for e in loss] == [0, 1, 2, 3, 4]
    assert [round(e.value, 6) for e in loss] == [1.0, 0.5, 0.333333, 0.25, 0.2]
    assert events.Scalars('lr')[0].value == pytest.approx(0.0002)


def test_log_value_before_configure_is_an_error():
    tb_logger.close()
    with pytest.raises(RuntimeError, match='configure'):
        tb_logger.log_value('x', 1.0, 0)


def test_average_meter_uses_vsepp_epsilon():
    meter = AverageMeter()
    meter.update(2.0, n=2)
    meter.update(5.0)
    assert meter.val == 5.0 and meter.sum == 9.0 and meter.count == 3
    assert meter.avg == pytest.approx(9.0 / 3.0001)
    assert str(meter) == '5.0000 (2.9999)'  # 9 / 3.0001


def test_log_collector_prints_and_logs_every_meter(tmp_path):
    collector = LogCollector()
    collector.update('Le', 1.5)
    collector.update('lr', 0.1)
    collector.update('Le', 0.5)
    assert str(collector) == 'Le 0.5000 (1.0000)  lr 0.1000 (0.1000)'
    tb_logger.configure(str(tmp_path))
    collector.tb_log(tb_logger, prefix='train/', step=7)
    tb_logger.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert events.Scalars('train/Le')[0].value == 0.5 and events.Scalars('train/Le')[0].step == 7


def test_log_collector_reset_drops_meters():
    collector = LogCollector()
    collector.update('Le', 1.0)
    collector.reset()
    assert str(collector) == '' and not collector.meters
