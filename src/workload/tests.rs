//! The loss-name checks and the workloads' shared helpers.

use super::*;

#[test]
fn block_rows_equal_per_batch_rows() {
    for index in [0, 1, 255, 256, 700] {
        let direct = batch_rows(5, 1, index, 1000, 16, Device::Cpu);
        let block = rows_of_block(5, 1, index / ROW_BLOCK, 1000, 16);
        let from_block = block.get((index % ROW_BLOCK) as i64);
        assert_eq!(
            Vec::<i64>::try_from(&direct).unwrap(),
            Vec::<i64>::try_from(&from_block).unwrap()
        );
    }
}

#[test]
fn loss_names_from_the_defaults_are_said_to_be_defaults() {
    let model: Vec<String> = ["main", "aux", "tags"].map(String::from).to_vec();
    let metrics = vec!["accuracy".to_string()];
    let mut config = Config::default();
    config.workload.primary = "main".into();
    let message = check_loss_names(&config, &model, &metrics)
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "workload.auxiliary lists \"helpful\" and \"harmful\" (the built-in default list: does the \
         config set workload.auxiliary?), which are not losses of this workload; it has: main, aux, tags. \
         To combine all its other losses: workload.auxiliary = [\"aux\", \"tags\"]"
    );
    config.workload.auxiliary = vec!["aux".into(), "nope".into()];
    let message = check_loss_names(&config, &model, &metrics)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("workload.auxiliary lists \"nope\", which is not"),
        "{message}"
    );
    // Every missing name, not the first alone (walkthrough B).
    config.workload.auxiliary = vec!["tag".into(), "aux".into(), "const".into()];
    let message = check_loss_names(&config, &model, &metrics)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(
            "workload.auxiliary lists \"tag\" (did you mean \"tags\"?) and \"const\", which are not losses"
        ),
        "{message}"
    );
    config.workload.auxiliary = vec!["tags".into()];
    check_loss_names(&config, &model, &metrics).unwrap();
    config.workload.primary = Config::default().workload.primary;
    let message = check_loss_names(&config, &model, &metrics)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("workload.primary = \"primary\" (the built-in default: does the config set workload.primary?) is not"),
        "{message}"
    );
    // A misspelt loss is pointed to (walkthrough R).
    config.workload.primary = "mian".into();
    let message = check_loss_names(&config, &model, &metrics)
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "workload.primary = \"mian\" is not a loss of this workload (did you mean \"main\"?); \
         it has: main, aux, tags"
    );
    config.workload.primary = "main".into();
    config.workload.auxiliary = vec!["tag".into()];
    let message = check_loss_names(&config, &model, &metrics)
        .unwrap_err()
        .to_string();
    assert!(message.contains("(did you mean \"tags\"?)"), "{message}");
    config.workload.primary = "accuracy".into();
    let message = check_loss_names(&config, &model, &metrics)
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "workload.primary = \"accuracy\" is not a loss of this workload (`accuracy` is one of the \
         model's evaluation metrics, which workload.metric picks from; losses are what training \
         combines); it has: main, aux, tags"
    );
    config.workload.primary = "main".into();
    config.workload.auxiliary = vec!["aux".into(), "metric/accuracy".into()];
    let message = check_loss_names(&config, &model, &metrics)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(
            "\"metric/accuracy\" (`metric/accuracy` is one of the model's evaluation metrics"
        ),
        "{message}"
    );
}

/// A loss missing from one forward's output (a masked loss returned only
/// when its batch has what it masks, walkthrough Q) is named with what the
/// forward did return and the rule it breaks.
#[test]
fn a_loss_missing_from_a_forward_says_what_came_back_and_the_rule() {
    let losses: Losses = [
        ("cls".to_string(), tch::Tensor::from(1.0)),
        ("metric/acc".to_string(), tch::Tensor::from(0.5)),
    ]
    .into();
    let message = select(&losses, &["cls".into(), "rare".into()])
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "the model returned no loss named `rare` (it returned `cls`): every loss must be returned \
         on every batch; a masked loss returns `torch.zeros(())` on a batch without what it masks"
    );
    let message = take_loss(losses, "rare").unwrap_err().to_string();
    assert!(message.starts_with("the model returned no loss named `rare` (it returned `cls`)"));
}
