"""`unrolled forecast train | predict | evaluate`: the time-series forecasting sub-commands (see unrolled.cli).

    unrolled forecast train --data pollution.csv --target TEMP --lookback 120 --gap 23 --split 0.5,0.25,0.25
    unrolled forecast train --resume runs/forecast
    unrolled forecast predict runs/forecast --out forecast.csv
    unrolled forecast evaluate runs/forecast --data newer.csv --since 2015-01-01
"""
from __future__ import annotations

import argparse

from .checkpoint import load_checkpoint
from .cli import (dropout_rate, nonnegative_float, nonnegative_int, path_name, positive_float, positive_int,
                  refuse_flags_with_resume, report_interrupted)
from .tasks import forecast, forecast_data, forecast_evaluate

# train flags that set a Config field of the same name (dashes become underscores)
CONFIG_FLAGS = ("data", "target", "features", "time_col", "missing", "categorical", "resample", "calendar",
                "split", "test_last", "val_last", "lookback", "horizon", "gap", "stride", "season", "ma_window",
                "ridge", "log", "base", "ar_features", "members", "round", "model", "cell", "hidden", "layers",
                "dropout", "recurrent_dropout", "loss", "lr", "schedule", "lr_patience", "batch", "clip",
                "input_lasso", "epochs", "patience", "minutes", "seed")
DEFAULT_OUT = "runs/forecast"


def column_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"must be a comma-separated list of column names, but was given {text!r}")
    return names


def ar_features(text: str) -> str | list[str]:
    return "auto" if text.strip() == "auto" else column_list(text)


def round_to(text: str) -> str | float:
    if text.strip() == "auto":
        return "auto"
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be auto or a step above zero such as 0.5, but was given {text!r}") \
            from None


def bases(text: str) -> str:
    try:
        return ",".join(forecast_data.parse_bases(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {', '.join(forecast_data.BASES)} or a comma-separated list of "
                                         f"distinct ones such as ar,last, but was given {text!r}") from None


def fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0 or not abs(sum(values) - 1) <= 1e-6:  # a NaN fails too
        raise argparse.ArgumentTypeError(f"must be three positive fractions adding up to 1, such as 0.5,0.25,0.25, "
                                         f"but was given {text!r}")
    return values


def register(tasks) -> None:
    parser = tasks.add_parser("forecast", help="time-series forecasting: train on a CSV file, predict ahead",
                              description="Recurrent forecasters for time series in CSV files, "
                                          "compared with baselines.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    train = actions.add_parser("train", help="train a forecaster and compare it with the baselines on the test period "
                                             "(or continue one with --resume)",
                               description="Train a forecaster; the last part of the series is the test period.")
    data = train.add_argument_group("data")
    data.add_argument("--data", type=path_name, metavar="CSV", help="a CSV file with a header row (required for a new run)")
    data.add_argument("--target", metavar="COL", help="the column to forecast (required for a new run)")
    data.add_argument("--features", type=column_list, metavar="COLS",
                      help="comma-separated input columns besides the target (default: every usable column)")
    data.add_argument("--time-col", metavar="COL",
                      help="the column of timestamps (default: year/month/day/hour columns, "
                           "or a first column of dates)")
    data.add_argument("--missing", choices=("interpolate", "drop"), help="missing values (default interpolate)")
    data.add_argument("--categorical", choices=("onehot", "drop"), help="columns of labels (default onehot)")
    data.add_argument("--resample", choices=("hourly", "daily", "monthly", "yearly"), help="average each period")
    data.add_argument("--calendar", action="store_const", const=True,
                      help="add sin/cos of the time of day and of the year as inputs")
    data.add_argument("--split", type=fractions, metavar="F,F,F",
                      help="train,validation,test fractions (default 0.7,0.15,0.15)")
    data.add_argument("--test-last", type=positive_int, metavar="N", help="the last N rows are the test period")
    data.add_argument("--val-last", type=positive_int, metavar="N", help="and the N rows before them validation")
    windows = train.add_argument_group("windows and baselines")
    windows.add_argument("--lookback", type=positive_int, metavar="N", help="input steps (default 24)")
    windows.add_argument("--horizon", type=positive_int, metavar="H", help="steps forecast at once (default 1)")
    windows.add_argument("--gap", type=nonnegative_int, metavar="G",
                         help="steps skipped before the first forecast step: --horizon 1 --gap 23 is 24 steps ahead")
    windows.add_argument("--stride", type=positive_int, metavar="S", help="between training windows (default 1)")
    windows.add_argument("--season", type=positive_int, metavar="N",
                         help="season length in steps (default from the frequency: 24 hourly, 7 daily, 12 monthly)")
    windows.add_argument("--ma-window", type=positive_int, metavar="N",
                         help="moving-average baseline (default the season)")
    windows.add_argument("--ridge", type=nonnegative_float, metavar="X",
                         help="ridge of the linear AR baseline (default 1e-3)")
    windows.add_argument("--log", action="store_const", const=True, help="model the log of a positive target")
    windows.add_argument("--base", type=bases, metavar="none|last|ar[,...]",
                         help="what the model corrects: nothing (default), the last value (for trending series) "
                              "or the linear AR baseline's forecast; several, e.g. ar,last: an ensemble of one "
                              "model per base, their forecasts averaged")
    windows.add_argument("--ar-features", type=ar_features, metavar="auto|COLS",
                         help="the input columns of the linear AR that an ar base corrects, besides the target "
                              "(and the calendar): named, or auto: those that backward elimination on the "
                              "validation period keeps (default: every one, the baseline itself)")
    windows.add_argument("--members", type=positive_int, metavar="N",
                         help="models per base, each with its own seed, all forecasts averaged (default 1)")
    windows.add_argument("--round", type=round_to, metavar="auto|STEP",
                         help="round the model's forecasts to multiples of STEP, or (auto) to the power of ten, at "
                              "most 1, that the target is recorded in over the training period, such as whole "
                              "degrees: scored by MAE, the best forecast of such values lies on a step "
                              "(default: no rounding)")
    model = train.add_argument_group("model and training")
    model.add_argument("--model", choices=tuple(forecast.MODELS), help="dense head or encoder-decoder (default direct)")
    model.add_argument("--cell", choices=("rnn", "lstm", "gru"), help="recurrent cell (default gru)")
    model.add_argument("--hidden", type=positive_int, metavar="N", help="units per layer (default 32)")
    model.add_argument("--layers", type=positive_int, metavar="N")
    model.add_argument("--dropout", type=dropout_rate, metavar="P", help="between layers and before the head")
    model.add_argument("--recurrent-dropout", type=dropout_rate, metavar="P",
                       help="on the state in every recurrent product, one mask per sequence for all its steps "
                            "(Keras's recurrent_dropout; default 0)")
    model.add_argument("--loss", choices=tuple(forecast.LOSSES), help="training loss (default mse)")
    model.add_argument("--lr", type=positive_float, metavar="X", help="Adam's learning rate (default 1e-3)")
    model.add_argument("--schedule", choices=("plateau", "cosine"),
                       help="halve the lr when validation stalls (default), or a cosine over the epochs")
    model.add_argument("--lr-patience", type=nonnegative_int, metavar="N",
                       help="epochs before the lr halves (default 3)")
    model.add_argument("--batch", type=positive_int, metavar="N", help="windows per step (default 64)")
    model.add_argument("--clip", type=positive_float, metavar="X", help="gradient-norm clipping (default 1)")
    model.add_argument("--input-lasso", type=nonnegative_float, metavar="X",
                       help="group lasso on each input column's first-layer weights but the target's: after "
                            "every step a column shrinks by lr * X in norm, to zero at most (default 0: none)")
    model.add_argument("--epochs", type=positive_int, metavar="N", help="at most (default 100)")
    model.add_argument("--patience", type=positive_int, metavar="N", help="early stopping, in epochs (default 10)")
    model.add_argument("--minutes", type=positive_float, metavar="M", help="stop after M minutes of training")
    model.add_argument("--seed", type=nonnegative_int, metavar="S")
    train.add_argument("--out", type=path_name, metavar="DIR", help=f"a new run folder (default {DEFAULT_OUT})")
    train.add_argument("--resume", type=path_name, metavar="DIR", help="continue the run in DIR exactly where it stopped")
    train.set_defaults(func=run_train)

    predict = actions.add_parser("predict", help="forecast the steps after the end of the data with a trained run")
    predict.add_argument("run", type=path_name, metavar="DIR")
    predict.add_argument("--data", type=path_name, metavar="CSV", help="newer data with the same columns (default: the run's CSV)")
    predict.add_argument("--out", type=path_name, metavar="FILE", help="the CSV of forecasts to write (default DIR/forecast.csv)")
    predict.set_defaults(func=run_predict)

    evaluate = actions.add_parser("evaluate", help="score a trained run against the baselines on data, such as "
                                                   "the months since it was trained",
                                  description="Score a trained run's forecasts against the baselines on every "
                                              "window of a CSV file; nothing is fitted again.")
    evaluate.add_argument("run", type=path_name, metavar="DIR")
    evaluate.add_argument("--data", type=path_name, metavar="CSV",
                          help="data with the same columns (default: the run's CSV, scored on its test period)")
    evaluate.add_argument("--since", metavar="TIME",
                          help="score the forecasts for this time on (if the data has no time column, a row "
                               "number, counted after cleaning)")
    evaluate.add_argument("--out", type=path_name, metavar="FILE",
                          help="also write every window's forecasts, the model's and the baselines', to this CSV")
    evaluate.set_defaults(func=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    given = {name: getattr(args, name) for name in CONFIG_FLAGS if getattr(args, name) is not None}
    refuse_flags_with_resume(args, given)
    if args.resume is None:
        missing = [f"--{name}" for name in ("data", "target") if name not in given]
        if missing:
            raise ValueError(f"a new run needs {' and '.join(missing)} (or --resume DIR to continue a run).")
    config = None if args.resume is not None else forecast.Config(**given)
    if config is not None and "lr_patience" in given and config.schedule != "plateau":
        raise ValueError(f"--lr-patience applies to --schedule plateau only, but this run's schedule is "
                         f"{config.schedule}.")
    run, results = forecast.train(config, out=args.out or DEFAULT_OUT, resume_from=args.resume)
    if results is None:
        step = load_checkpoint(run)[1]["step"]
        return report_interrupted("forecast", step, run)
    scores = results["scores"]
    best = min((k for k in scores if k != "model"), key=lambda k: scores[k]["mae"])
    print(f"test MAE {scores['model']['mae']:.4g}, RMSE {scores['model']['rmse']:.4g}; best baseline "
          f"{best.replace('baseline_', '')} MAE {scores[best]['mae']:.4g}, RMSE {scores[best]['rmse']:.4g}; "
          f"run in {run}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    print(forecast.predict(args.run, data=args.data, out=args.out))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    print(forecast_evaluate.evaluate_run(args.run, data=args.data, since=args.since, out=args.out)[1])
    return 0
