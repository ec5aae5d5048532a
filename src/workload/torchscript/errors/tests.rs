//! Tests of the TorchScript error hints.

use super::*;

/// The CPU's and CUDA's words for Int32 class indices; a uint8 mask in
/// the batch is not blamed.
#[test]
fn narrow_class_indices_are_named_from_either_devices_message() {
    let batch: Batch = [
        ("label", Tensor::zeros([4], (Kind::Int, tch::Device::Cpu))),
        ("mask", Tensor::zeros([4], (Kind::Uint8, tch::Device::Cpu))),
        (
            "tokens",
            Tensor::zeros([4], (Kind::Int64, tch::Device::Cpu)),
        ),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t))
    .collect();
    for message in [
        "RuntimeError: expected scalar type Long but found Int",
        "RuntimeError: \"nll_loss_forward_reduce_cuda_kernel_2d_index\" not implemented for 'Int'",
    ] {
        let hint = batch_hint(message, &batch).unwrap();
        assert!(hint.starts_with("`label` (Int) not Int64"), "{hint}");
        assert!(!hint.contains("mask") && !hint.contains("tokens"), "{hint}");
    }
    assert_eq!(batch_hint("RuntimeError: shape mismatch", &batch), None);
}

/// Class indices stored as floats are named; a float input is not
/// (walkthrough U's Float labels had no hint).
#[test]
fn float_class_indices_are_named_and_float_inputs_are_not() {
    let batch: Batch = [
        (
            "x",
            Tensor::from_slice(&[0.5f32, -1.25, 2.0]).reshape([3, 1]),
        ),
        // Whole-number inputs (pixels): far more values than the labels.
        (
            "pixels",
            Tensor::arange(64, (Kind::Float, tch::Device::Cpu)).reshape([4, 16]),
        ),
        ("y", Tensor::from_slice(&[0.0f32, 3.0, 3.0, 1.0])),
        // Two 0/1 targets beside them: fewer values than `y`, still no
        // reason to leave `y` out (walkthrough Z4's 3-class mask was).
        ("edge", Tensor::from_slice(&[0.0f32, 1.0, 1.0, 0.0])),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t))
    .collect();
    let hint = batch_hint(
        "RuntimeError: expected scalar type Long but found Float",
        &batch,
    )
    .unwrap();
    assert!(
        hint.starts_with("`edge` (Float), `y` (Float) not Int64") && !hint.contains("pixels"),
        "{hint}"
    );
}

/// Float index tensors are named; float features are not.
#[test]
fn float_index_tensors_are_named() {
    let batch: Batch = [
        (
            "x",
            Tensor::from_slice(&[0.5f32, -1.25, 2.0]).reshape([3, 1]),
        ),
        (
            "edges",
            Tensor::from_slice(&[0.0f32, 2.0, 1.0, 2.0]).reshape([2, 2]),
        ),
        ("mask", Tensor::from_slice(&[0.0f32, 1.0, 1.0])),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t))
    .collect();
    let embedding = "Expected tensor for argument #1 'indices' to have one of the following \
                     scalar types: Long, Int; but got CPUFloatType instead";
    assert!(batch_hint(embedding, &batch).is_some_and(|h| h.starts_with("`edges`")));
    let hint = batch_hint(
        "RuntimeError: index_select(): Expected dtype int32 or int64 for index",
        &batch,
    )
    .unwrap();
    assert!(
        hint.starts_with("`edges` (Float) whole numbers stored as floats")
            && !hint.contains("`x`")
            && !hint.contains("mask"),
        "{hint}"
    );
    assert_eq!(batch_hint("RuntimeError: shape mismatch", &batch), None);
}

/// TorchScript's words for a `forward` that takes tensors, not the dict.
#[test]
fn a_forward_that_does_not_take_the_dict_is_told_the_contract() {
    let batch = Batch::new();
    for message in [
        "forward() Expected a value of type 'Tensor' for argument 'x' but instead found type 'Dict[str, Tensor]'.",
        "forward() is missing value for argument 'y'. Declaration: forward(__torch__.M self, Tensor x, Tensor y) -> Dict(str, Tensor)",
    ] {
        let hint = batch_hint(message, &batch).unwrap();
        assert!(hint.contains("`forward(self, batch: Dict[str, Tensor]) -> Dict[str, Tensor]`"), "{hint}");
    }
    assert_eq!(
        batch_hint("loss() Expected a value of type 'Tensor'", &batch),
        None
    );
}

/// Integer features named for a float layer's dtype error; 1-D integer
/// labels and float tensors are not.
#[test]
fn integer_features_are_named_for_a_float_layers_dtype_error() {
    let batch: Batch = [
        (
            "x",
            Tensor::zeros([4, 16, 4], (Kind::Int64, tch::Device::Cpu)),
        ),
        ("label", Tensor::zeros([4], (Kind::Int64, tch::Device::Cpu))),
        (
            "noise",
            Tensor::zeros([4, 3], (Kind::Float, tch::Device::Cpu)),
        ),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t))
    .collect();
    let message =
        "RuntimeError: expected m1 and m2 to have the same dtype, but got: long int != float";
    let hint = batch_hint(message, &batch).unwrap();
    assert!(hint.starts_with("`x` (Int64) in the data"), "{hint}");
    assert!(hint.contains("store them as float32"), "{hint}");
    assert!(!hint.contains("label") && !hint.contains("noise"), "{hint}");
    // The LSTM's words for int32, and uint8's, name it too.
    for message in [
        "RuntimeError: input must have the type torch.float32, got type torch.int32",
        "RuntimeError: expected m1 and m2 to have the same dtype, but got: unsigned char != float",
    ] {
        assert!(batch_hint(message, &batch).is_some(), "{message}");
    }
    // "along" is not "long": a float mismatch named along a path.
    assert_eq!(
        batch_hint(
            "RuntimeError: same dtype expected along dim 1: double != float",
            &batch
        ),
        None
    );
    // A dtype error between two float kinds names nothing.
    assert_eq!(
        batch_hint(
            "RuntimeError: expected m1 and m2 to have the same dtype, but got: double != float",
            &batch
        ),
        None
    );
}

#[test]
fn a_torchscript_runtime_error_shows_its_exception_and_innermost_frame() {
    // As libtorch reports a scripted `reshape` that fails at run time.
    let text = "The following operation failed in the TorchScript interpreter.\n\
        Traceback of TorchScript (most recent call last):\n  File \"m.py\", line 9, in forward\n\
        \x20   def forward(self, batch):\n        return {\"primary\": self.base(batch)}\n\
        \x20                          ~~~~~~~~~ <--- HERE\n  File \"m.py\", line 7, in base\n\
        \x20   def base(self, batch):\n        return batch[\"x\"].reshape(7).sum()\n\
        \x20              ~~~~~~~~~~~~~~~~~ <--- HERE\n\
        RuntimeError: shape '[7]' is invalid for input of size 12\n";
    let message = torch_message(&tch::TchError::Torch(text.into()));
    let mut lines = message.lines();
    assert_eq!(
        lines.next(),
        Some("RuntimeError: shape '[7]' is invalid for input of size 12")
    );
    assert!(
        message.contains("File \"m.py\", line 7, in base"),
        "{message}"
    );
    assert!(message.contains("reshape(7)"), "{message}");
    assert!(!message.contains("line 9"), "{message}");
}

#[test]
fn a_failure_inside_torch_shows_the_users_line_that_called_it() {
    // As libtorch reports float labels given to `F.cross_entropy` in a
    // model with several such calls (a walkthrough's): the serialized
    // traceback, then the original code's, whose innermost frame is
    // torch's own.
    let text = "The following operation failed in the TorchScript interpreter.\n\
        Traceback of TorchScript, serialized code (most recent call last):\n\
        \x20 File \"code/__torch__.py\", line 32, in forward\n\
        \x20   cls = _0((cls_head).forward(pooled, ), batch[\"labels\"], None)\n\
        \x20         ~~ <--- HERE\n\
        \x20 File \"code/__torch__/torch/nn/functional.py\", line 19, in cross_entropy\n\
        \x20 _3 = torch.cross_entropy_loss(input, target, weight)\n\
        \x20      ~~~~~~~~~~~~~~~~~~~~~~~~ <--- HERE\n\
        Traceback of TorchScript, original code (most recent call last):\n\
        \x20 File \"/tmp/w/build_model.py\", line 61, in forward\n\
        \x20       pooled = h.mean(1)\n\
        \x20       cls = F.cross_entropy(self.cls_head(pooled), batch[\"labels\"])\n\
        \x20             ~~~~~~~~~~~~~~~ <--- HERE\n\
        \x20 File \"/venv/lib/python3.11/site-packages/torch/nn/functional.py\", line 3504, in cross_entropy\n\
        \x20   return torch._C._nn.cross_entropy_loss(\n\
        \x20          ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~ <--- HERE\n\
        RuntimeError: expected scalar type Long but found Float\n";
    let message = torch_message(&tch::TchError::Torch(text.into()));
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(
        lines[0],
        "RuntimeError: expected scalar type Long but found Float"
    );
    assert_eq!(
        lines[1].trim(),
        "File \"/tmp/w/build_model.py\", line 61, in forward"
    );
    assert!(
        message.contains("cls = F.cross_entropy(self.cls_head(pooled)"),
        "{message}"
    );
    let inside = lines.last().unwrap();
    assert!(
        inside.starts_with("  inside File \"")
            && inside.ends_with("torch/nn/functional.py\", line 3504, in cross_entropy"),
        "{message}"
    );
    // Neither the serialized code nor torch's source lines.
    assert!(!message.contains("code/__torch__"), "{message}");
    assert!(!message.contains("_C._nn"), "{message}");
}

/// An index out of range names the tensor that holds it (walkthrough X's
/// "Target 4 is out of bounds." named none), and nothing when no integer
/// tensor does.
#[test]
fn an_index_out_of_range_names_the_tensor_that_holds_it() {
    let batch: Batch = [
        ("y", Tensor::from_slice(&[0i64, 4, 1, 3])),
        ("ids", Tensor::from_slice(&[2i64, 9, 1, 0])),
        ("x", Tensor::from_slice(&[4.0f32, 4.0, 4.0, 4.0])),
        ("pixels", Tensor::from_slice(&[255u8, 3, 0, 1])),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t))
    .collect();
    let hint = batch_hint("RuntimeError: Target 4 is out of bounds.", &batch).unwrap();
    assert!(
        hint.starts_with(
            "`y` holds 4 (1 of its 4 values here, which run from 0 to 4): class indices"
        ),
        "{hint}"
    );
    assert!(!hint.contains("`ids`") && !hint.contains("`x`"), "{hint}");
    assert!(
        hint.contains("classes − 1 (the width of the model's logits)"),
        "{hint}"
    );
    let hint = batch_hint(
        "index 9 is out of bounds for dimension 0 with size 5",
        &batch,
    )
    .unwrap();
    assert!(
        hint.starts_with("`ids` holds 9 (1 of its 4 values"),
        "{hint}"
    );
    // Two tensors hold 3: neither is singled out (walkthrough L3).
    let hint = batch_hint("RuntimeError: Target 3 is out of bounds.", &batch).unwrap();
    assert!(
        hint.starts_with("`y` holds 3 (")
            && hint.contains("; `pixels` holds 3 (")
            && hint.contains(
                " (one of these: the model's line above shows which the failing op read): class"
            ),
        "{hint}"
    );
    let hint = batch_hint("IndexError: index out of range in self", &batch).unwrap();
    assert!(
        hint.contains(
            "hold `y` from 0 to 4, `ids` from 0 to 9, `pixels` from 0 to 255: an embedding's"
        ),
        "{hint}"
    );
    assert_eq!(
        batch_hint("RuntimeError: Target 7 is out of bounds.", &batch),
        None
    );
    assert_eq!(
        batch_hint("RuntimeError: Target -3 is out of bounds.", &batch),
        None
    );
    // A uint8 tensor's 255 is no -1 (the kind would wrap it).
    assert_eq!(
        batch_hint("RuntimeError: Target -1 is out of bounds.", &batch),
        None
    );
}
