use super::*;

fn adam() -> Adam {
    Adam::TORCH
}

#[test]
fn defaults_are_valid() {
    assert!(Hyper::Adam(adam()).validate(0).is_ok());
}

#[test]
fn out_of_range_values_name_the_parameter_and_group() {
    let bad = [
        Adam { lr: -1.0, ..adam() },
        Adam {
            lr: f64::NAN,
            ..adam()
        },
        Adam {
            beta1: 1.0,
            ..adam()
        },
        Adam {
            beta2: -0.1,
            ..adam()
        },
        Adam { eps: 0.0, ..adam() },
        Adam {
            weight_decay: -1e-3,
            ..adam()
        },
    ];
    let names = ["lr", "lr", "betas[0]", "betas[1]", "eps", "weight_decay"];
    for (h, want) in bad.iter().zip(names) {
        match Hyper::Adam(*h).validate(2) {
            Err(Error::Hyper { group: 2, name, .. }) => assert_eq!(name, want),
            other => panic!("{h:?}: {other:?}"),
        }
    }
}

#[test]
fn the_registry_reads_each_table_in_order() {
    let mut names: Vec<&str> = OPTIMIZERS.iter().map(|e| e.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), OPTIMIZERS.len(), "a name registered twice");
    for e in OPTIMIZERS {
        assert!(e.fields.len() <= MAX_FIELDS, "{}", e.name);
        assert!(e.algorithm.slot_names().len() <= MAX_SLOTS, "{}", e.name);
        assert_eq!(optimizer(e.name).map(|f| f.name), Some(e.name));
    }
    assert!(optimizer("adamx").is_none());
    let read = [
        Value::Pair(0.9, 0.999),
        Value::Number(1e-8),
        Value::Number(0.0),
        Value::Flag(false),
        Value::Flag(false),
    ];
    let keys: Vec<&str> = Adam::FIELDS.iter().map(|f| f.key).collect();
    assert_eq!(
        keys,
        ["betas", "eps", "weight_decay", "amsgrad", "maximize"]
    );
    assert_eq!(
        (optimizer("adam").unwrap().build)(1e-3, &read),
        Hyper::Adam(adam())
    );
    assert_eq!(
        (optimizer("adamw").unwrap().build)(1e-3, &read),
        Hyper::Adam(Adam {
            decoupled: true,
            ..adam()
        })
    );
    let sgd = (optimizer("sgd").unwrap().build)(
        0.1,
        &[
            Value::Number(0.9),
            Value::Number(0.0),
            Value::Flag(true),
            Value::Number(1e-4),
            Value::Flag(false),
        ],
    );
    let want = Sgd {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.0,
        nesterov: true,
        weight_decay: 1e-4,
        maximize: false,
    };
    assert_eq!(sgd, Hyper::Sgd(want));
    assert_eq!(
        Algorithm::Adam.slot_names(),
        ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
    );
}

#[test]
fn nesterov_needs_momentum_and_no_dampening() {
    let sgd = Sgd {
        lr: 0.1,
        momentum: 0.0,
        dampening: 0.0,
        nesterov: true,
        weight_decay: 0.0,
        maximize: false,
    };
    assert!(Hyper::Sgd(sgd).validate(0).is_err());
    assert!(Hyper::Sgd(Sgd {
        momentum: 0.9,
        ..sgd
    })
    .validate(0)
    .is_ok());
    let damped = Sgd {
        momentum: 0.9,
        dampening: 0.1,
        ..sgd
    };
    assert!(Hyper::Sgd(damped).validate(0).is_err());
}
