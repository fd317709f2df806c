//! What a page is made of: [`Block`]s in order, each drawn the same way on every page.
//! The control plane's `ui` module composes pages from them out of service-layer data;
//! which blocks (and which buttons) a page gets is decided there, by role.

use leptos::prelude::*;

use crate::chart::{self, Bar};
use crate::form::{Field, Form, Input};

/// A table cell.
#[derive(Debug, Clone)]
pub enum Cell {
    Text(String),
    /// Right-aligned figure.
    Num(String),
    Code(String),
    Link {
        text: String,
        href: String,
    },
    /// A one-button form in the row (revoke, lift, ...).
    Action(Box<Form>),
    /// Nothing (a write the viewer may not do).
    Blank,
}

impl Cell {
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    pub fn num(text: impl Into<String>) -> Self {
        Self::Num(text.into())
    }

    pub fn link(text: impl Into<String>, href: impl Into<String>) -> Self {
        Self::Link {
            text: text.into(),
            href: href.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Table {
    pub id: String,
    pub caption: String,
    /// Column labels; a label starting with `#` is a figure column (right-aligned; the
    /// `#` is not shown).
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    /// What an empty table says instead ("No keys yet — create one below.").
    pub empty: String,
}

/// A GET form that narrows a list (search, filters, date range).
#[derive(Debug, Clone)]
pub struct Filters {
    pub id: String,
    pub action: String,
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone)]
pub enum Block {
    Heading(String),
    Text(String),
    /// A muted sentence for an empty state.
    Empty(String),
    /// Headline figures: (label, figure).
    Cards(Vec<(String, String)>),
    Table(Table),
    Chart {
        caption: String,
        bars: Vec<Bar>,
    },
    Form(Form),
    Filters(Filters),
    /// A secret shown once (a new key), with its copy button and warning.
    Secret {
        id: String,
        label: String,
        value: String,
        warning: String,
    },
    /// Previous/next page links.
    Pager {
        prev: Option<String>,
        next: Option<String>,
    },
    /// Links to related pages or downloads.
    Links(Vec<(String, String)>),
    /// The session's CSRF token, for scripts that call the API with the cookie.
    Csrf(String),
    /// A change as field → (before, after), for the audit log.
    Diff {
        id: String,
        rows: Vec<(String, String, String)>,
    },
}

pub fn blocks(blocks: Vec<Block>) -> impl IntoView {
    blocks.into_iter().map(block).collect_view()
}

fn block(block: Block) -> AnyView {
    match block {
        Block::Heading(text) => view! { <h2>{text}</h2> }.into_any(),
        Block::Text(text) => view! { <p>{text}</p> }.into_any(),
        Block::Empty(text) => view! { <p class="empty">{text}</p> }.into_any(),
        Block::Cards(cards) => view! {
            <ul class="cards">
                {cards
                    .into_iter()
                    .map(|(label, figure)| {
                        view! {
                            <li>
                                <span class="figure">{figure}</span>
                                {label}
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        }
        .into_any(),
        Block::Table(table) => table_view(table).into_any(),
        Block::Chart { caption, bars } => chart::bars(&caption, &bars).into_any(),
        Block::Form(form) => form.view(),
        Block::Filters(filters) => filters_view(filters).into_any(),
        Block::Secret { id, label, value, warning } => {
            let label_id = format!("{id}-label");
            let labelled_by = label_id.clone();
            let copy = id.clone();
            view! {
            <section class="stack" aria-labelledby=labelled_by>
                <p id=label_id><strong>{label}</strong></p>
                <code class="secret" id=id>{value}</code>
                <button type="button" class="primary" data-copy=copy>"Copy to clipboard"</button>
                <p class="warning" role="alert">{warning}</p>
            </section>
            }
            .into_any()
        }
        Block::Pager { prev, next } => view! {
            <nav class="pager" aria-label="Pages">
                {prev.map(|href| view! { <a href=href rel="prev">"← Newer"</a> })}
                {next.map(|href| view! { <a href=href rel="next">"Older →"</a> })}
            </nav>
        }
        .into_any(),
        Block::Links(links) => view! {
            <ul class="links">
                {links
                    .into_iter()
                    .map(|(text, href)| view! { <li><a href=href>{text}</a></li> })
                    .collect_view()}
            </ul>
        }
        .into_any(),
        Block::Csrf(token) => view! {
            <p>"Send " <code>"X-CSRF-Token: " <span id="csrf">{token}</span></code> " with every write."</p>
        }
        .into_any(),
        Block::Diff { id, rows } => view! {
            <table id=id>
                <caption>"Change"</caption>
                <thead><tr><th scope="col">"Field"</th><th scope="col">"Before"</th><th scope="col">"After"</th></tr></thead>
                <tbody>
                    {rows
                        .into_iter()
                        .map(|(field, before, after)| {
                            view! {
                                <tr>
                                    <th scope="row">{field}</th>
                                    <td><del>{before}</del></td>
                                    <td><ins>{after}</ins></td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        }
        .into_any(),
    }
}

fn table_view(table: Table) -> impl IntoView {
    let Table {
        id,
        caption,
        columns,
        rows,
        empty,
    } = table;
    if rows.is_empty() {
        return view! { <p class="empty" id=id>{empty}</p> }.into_any();
    }
    let numeric: Vec<bool> = columns.iter().map(|c| c.starts_with('#')).collect();
    let head = columns
        .into_iter()
        .map(|c| {
            let (class, label) = match c.strip_prefix('#') {
                Some(label) => ("num", label.to_owned()),
                None => ("", c),
            };
            view! { <th scope="col" class=class>{label}</th> }
        })
        .collect_view();
    let body = rows
        .into_iter()
        .map(|row| {
            let cells = row
                .into_iter()
                .enumerate()
                .map(|(i, cell)| cell_view(cell, numeric.get(i).copied().unwrap_or(false)))
                .collect_view();
            view! { <tr>{cells}</tr> }
        })
        .collect_view();
    view! {
        <table id=id>
            <caption>{caption}</caption>
            <thead><tr>{head}</tr></thead>
            <tbody>{body}</tbody>
        </table>
    }
    .into_any()
}

fn cell_view(cell: Cell, numeric: bool) -> AnyView {
    let class = if numeric { "num" } else { "" };
    match cell {
        Cell::Text(text) => view! { <td class=class>{text}</td> }.into_any(),
        Cell::Num(text) => view! { <td class="num">{text}</td> }.into_any(),
        Cell::Code(text) => view! { <td><code>{text}</code></td> }.into_any(),
        Cell::Link { text, href } => {
            view! { <td class=class><a href=href>{text}</a></td> }.into_any()
        }
        Cell::Action(form) => view! { <td>{inline_form(*form)}</td> }.into_any(),
        Cell::Blank => view! { <td></td> }.into_any(),
    }
}

/// A one-button form inside a table row: no fieldset frame.
fn inline_form(form: Form) -> impl IntoView {
    let class = if form.danger.is_some() {
        "danger"
    } else {
        "primary"
    };
    let hidden = form
        .hidden
        .into_iter()
        .map(|(name, value)| view! { <input type="hidden" name=name value=value/> })
        .collect_view();
    view! {
        <form method="post" action=form.action id=form.id class="inline" data-confirm=form.danger>
            <input type="hidden" name="csrf_token" value=form.csrf/>
            {hidden}
            <button type="submit" class=class>{form.submit}</button>
        </form>
    }
}

fn filters_view(filters: Filters) -> impl IntoView {
    let Filters { id, action, fields } = filters;
    let fields = fields
        .into_iter()
        .map(|f| {
            let fid = format!("{id}-{}", f.name);
            let input = match f.input {
                Input::Select(options) => {
                    let value = f.value.clone();
                    view! {
                        <select id=fid.clone() name=f.name>
                            {options
                                .into_iter()
                                .map(|(v, label)| {
                                    let selected = v == value;
                                    view! { <option value=v selected=selected>{label}</option> }
                                })
                                .collect_view()}
                        </select>
                    }
                    .into_any()
                }
                Input::DateTime => {
                    view! { <input id=fid.clone() type="date" name=f.name value=f.value/> }
                        .into_any()
                }
                _ => view! { <input id=fid.clone() type="search" name=f.name value=f.value/> }
                    .into_any(),
            };
            view! {
                <div class="field">
                    <label for=fid>{f.label}</label>
                    {input}
                </div>
            }
        })
        .collect_view();
    view! {
        <form method="get" action=action id=id class="filters" role="search">
            {fields}
            <button type="submit" class="primary">"Apply"</button>
        </form>
    }
}
