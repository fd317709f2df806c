//! Forms as plain HTML: each carries the session's CSRF token, each field shows its own
//! error beside it (the service layer's field errors, by field name), and values the
//! person typed come back after a refused submit.

use leptos::prelude::*;

/// The kind of input a field is.
#[derive(Debug, Clone)]
pub enum Input {
    Text,
    Number,
    /// `datetime-local`.
    DateTime,
    /// A drop-down of (value, label).
    Select(Vec<(String, String)>),
}

#[derive(Debug, Clone)]
pub struct Field {
    pub label: String,
    pub name: String,
    pub value: String,
    pub input: Input,
    pub required: bool,
    pub hint: Option<String>,
    pub error: Option<String>,
}

impl Field {
    pub fn text(label: &str, name: &str) -> Self {
        Self {
            label: label.into(),
            name: name.into(),
            value: String::new(),
            input: Input::Text,
            required: false,
            hint: None,
            error: None,
        }
    }

    pub fn number(label: &str, name: &str) -> Self {
        Self {
            input: Input::Number,
            ..Self::text(label, name)
        }
    }

    pub fn select(label: &str, name: &str, options: Vec<(String, String)>) -> Self {
        Self {
            input: Input::Select(options),
            ..Self::text(label, name)
        }
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = value.into();
        self
    }
}

/// A refused submit: what was typed and what was wrong with it.
#[derive(Debug, Clone, Default)]
pub struct Submitted {
    pub values: Vec<(String, String)>,
    /// (field name, message); a message for a field the form does not show goes on top.
    pub errors: Vec<(String, String)>,
}

impl Submitted {
    fn value(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn error(&self, name: &str) -> Option<String> {
        let messages: Vec<&str> = self
            .errors
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, m)| m.as_str())
            .collect();
        (!messages.is_empty()).then(|| messages.join("; "))
    }
}

/// One form. `id` names it (tests and labels use it); `danger` marks a destructive act,
/// which the script asks to confirm (and which is a separate, explicit button anyway).
#[derive(Debug, Clone)]
pub struct Form {
    pub id: String,
    pub action: String,
    pub csrf: String,
    pub submit: String,
    pub fields: Vec<Field>,
    pub hidden: Vec<(String, String)>,
    pub danger: Option<String>,
    pub submitted: Option<Submitted>,
}

impl Form {
    pub fn new(id: &str, action: impl Into<String>, csrf: &str, submit: &str) -> Self {
        Self {
            id: id.into(),
            action: action.into(),
            csrf: csrf.into(),
            submit: submit.into(),
            fields: Vec::new(),
            hidden: Vec::new(),
            danger: None,
            submitted: None,
        }
    }

    pub fn field(mut self, field: Field) -> Self {
        self.fields.push(field);
        self
    }

    pub fn hidden(mut self, name: &str, value: impl Into<String>) -> Self {
        self.hidden.push((name.into(), value.into()));
        self
    }

    /// Ask "`question`" before submitting (with JavaScript); styled as destructive.
    pub fn confirm(mut self, question: impl Into<String>) -> Self {
        self.danger = Some(question.into());
        self
    }

    /// Show a refused submit's values and errors, when it is this form's.
    pub fn submitted(mut self, submitted: Option<&Submitted>) -> Self {
        self.submitted = submitted.cloned();
        self
    }
}

impl Form {
    pub fn view(self) -> AnyView {
        form_view(self).into_any()
    }
}

fn form_view(form: Form) -> impl IntoView {
    let Form {
        id,
        action,
        csrf,
        submit,
        fields,
        hidden,
        danger,
        submitted,
    } = form;
    let submitted = submitted.unwrap_or_default();
    let shown: Vec<String> = fields.iter().map(|f| f.name.clone()).collect();
    let general: Vec<String> = submitted
        .errors
        .iter()
        .filter(|(n, _)| !shown.contains(n))
        .map(|(n, m)| {
            if n.is_empty() || n == "body" {
                m.clone()
            } else {
                format!("{n}: {m}")
            }
        })
        .collect();
    let general = (!general.is_empty()).then(|| {
        view! {
            <div class="form-error" role="alert">
                {general.into_iter().map(|m| view! { <p>{m}</p> }).collect_view()}
            </div>
        }
    });
    let fields = fields
        .into_iter()
        .map(|field| {
            let value = submitted
                .value(&field.name)
                .map(str::to_owned)
                .unwrap_or(field.value.clone());
            let error = field.error.clone().or_else(|| submitted.error(&field.name));
            field_view(&id, field, value, error)
        })
        .collect_view();
    let hidden = hidden
        .into_iter()
        .map(|(name, value)| view! { <input type="hidden" name=name value=value/> })
        .collect_view();
    let class = if danger.is_some() {
        "danger"
    } else {
        "primary"
    };
    view! {
        <form method="post" action=action id=id.clone() class="stack" data-confirm=danger>
            <input type="hidden" name="csrf_token" value=csrf/>
            {hidden}
            {general}
            {fields}
            <button type="submit" class=class>{submit}</button>
        </form>
    }
}

fn field_view(
    form: &str,
    field: Field,
    value: String,
    error: Option<String>,
) -> impl IntoView + use<> {
    let id = format!("{form}-{}", field.name);
    let error_id = format!("{id}-error");
    let hint_id = format!("{id}-hint");
    let described = match (&error, &field.hint) {
        (Some(_), Some(_)) => Some(format!("{error_id} {hint_id}")),
        (Some(_), None) => Some(error_id.clone()),
        (None, Some(_)) => Some(hint_id.clone()),
        (None, None) => None,
    };
    let invalid = error.is_some().then_some("true");
    let name = field.name.clone();
    let input = match field.input {
        Input::Select(options) => view! {
            <select id=id.clone() name=name aria-invalid=invalid aria-describedby=described required=field.required>
                {options
                    .into_iter()
                    .map(|(v, label)| {
                        let selected = v == value;
                        view! { <option value=v selected=selected>{label}</option> }
                    })
                    .collect_view()}
            </select>
        }
        .into_any(),
        kind => {
            let (kind, step) = match kind {
                Input::Number => ("number", Some("any")),
                Input::DateTime => ("datetime-local", None),
                _ => ("text", None),
            };
            view! {
                <input id=id.clone() type=kind step=step name=name value=value aria-invalid=invalid
                    aria-describedby=described required=field.required/>
            }
            .into_any()
        }
    };
    view! {
        <div class="field">
            <label for=id>{field.label}</label>
            {input}
            {field.hint.map(|h| view! { <p class="hint" id=hint_id>{h}</p> })}
            {error.map(|e| view! { <p class="field-error" id=error_id>{e}</p> })}
        </div>
    }
}
