//! The frame every page shares: the document head (stylesheet, the nonce'd script), the
//! navigation, who is signed in with the sign-out form, and a flash message.

use leptos::prelude::*;

use crate::assets;

/// A link of the navigation.
#[derive(Debug, Clone)]
pub struct Nav {
    pub label: String,
    pub href: String,
    pub current: bool,
}

impl Nav {
    pub fn new(label: impl Into<String>, href: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            href: href.into(),
            current: false,
        }
    }
}

/// A one-line outcome shown above the page (after a redirect, from a query parameter).
#[derive(Debug, Clone)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

/// What the frame needs: everything but the page's own body.
#[derive(Debug, Clone, Default)]
pub struct Shell {
    pub title: String,
    /// This response's CSP nonce (the script tag carries it).
    pub nonce: String,
    /// The signed-in person; `None` on pages shown before sign-in.
    pub email: Option<String>,
    pub platform_admin: bool,
    /// The session's CSRF token, put into every form.
    pub csrf: String,
    pub nav: Vec<Nav>,
    pub flash: Option<Flash>,
    /// An emergency stop or other banner every page shows while it lasts.
    pub alerts: Vec<String>,
}

pub fn document(shell: Shell, body: impl IntoView + 'static) -> impl IntoView {
    let Shell {
        title,
        nonce,
        email,
        platform_admin,
        csrf,
        nav,
        flash,
        alerts,
    } = shell;
    let page_title = format!("{title} · Tollgate");
    let signed_in = email.map(|email| {
        view! {
            <div class="who">
                <span id="email">{email}</span>
                {platform_admin.then(|| view! { <span class="badge">"platform admin"</span> })}
                <form method="post" action="/auth/logout" class="inline">
                    <input type="hidden" name="csrf_token" value=csrf.clone()/>
                    <button type="submit" class="link" id="sign-out">"Sign out"</button>
                </form>
            </div>
        }
    });
    let nav = (!nav.is_empty()).then(|| {
        view! {
            <nav aria-label="Main">
                <ul>
                    {nav
                        .into_iter()
                        .map(|item| {
                            let current = item.current.then_some("page");
                            view! {
                                <li>
                                    <a href=item.href aria-current=current>{item.label}</a>
                                </li>
                            }
                        })
                        .collect_view()}
                </ul>
            </nav>
        }
    });
    let flash = flash.map(|f| {
        let class = if f.ok { "flash ok" } else { "flash error" };
        let role = if f.ok { "status" } else { "alert" };
        view! { <p class=class role=role id="flash">{f.text}</p> }
    });
    let alerts = alerts
        .into_iter()
        .map(|text| view! { <p class="banner" role="alert">{text}</p> })
        .collect_view();
    view! {
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <title>{page_title}</title>
                <link rel="stylesheet" href=assets::css_path()/>
                <script src=assets::js_path() nonce=nonce defer=true></script>
            </head>
            <body>
                <header>
                    <a href="/" class="brand">"Tollgate"</a>
                    {signed_in}
                </header>
                {nav}
                <main id="main">
                    {alerts}
                    {flash}
                    <h1>{title}</h1>
                    {body}
                </main>
            </body>
        </html>
    }
}
