//! The pagination loop for EC2's `NextToken` APIs, separate from the SDK so that it can be
//! unit-tested: moto and LocalStack ignore `MaxResults` and never return a `NextToken`, so no
//! emulator test can exercise it.

use std::future::Future;

/// Pages requested at most before giving up: a server that keeps returning tokens would
/// otherwise loop forever (1,000 pages of 1,000 items is far beyond any EC2 quota).
pub(crate) const MAX_PAGES: usize = 1000;

/// Error from [`paginate`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError<E> {
    /// A page request failed.
    #[error("page request failed")]
    Fetch(#[source] E),
    /// The server returned the same token twice, or more than [`MAX_PAGES`] pages.
    #[error("pagination did not terminate after {pages} pages")]
    Runaway {
        /// Pages fetched.
        pages: usize,
    },
}

/// Every page of one EC2 `Describe…` call, as one list: `$request` is the request builder
/// (filters set), `$max` its `MaxResults` (EC2's range differs per call), `$items` the
/// output's list, `$operation` the name errors carry. The builder is made again for each
/// page, so the filters are the same on every page.
macro_rules! describe_all {
    ($request:expr, $max:expr, $items:ident, $operation:literal) => {
        $crate::paginate::paginate(move |token| async move {
            let o = $request
                .max_results($max)
                .set_next_token(token)
                .send()
                .await
                .map_err($crate::backend::api_err($operation))?;
            Ok((o.$items().to_vec(), o.next_token().map(str::to_string)))
        })
        .await
        .map_err($crate::backend::page_err($operation))
    };
}
pub(crate) use describe_all;

/// Calls `fetch` with `None`, then with each returned token, until no (or an empty) token
/// comes back, concatenating the items.
pub(crate) async fn paginate<T, E, F, Fut>(mut fetch: F) -> Result<Vec<T>, PageError<E>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), E>>,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for pages in 1..=MAX_PAGES {
        let (items, next) = fetch(token.clone()).await.map_err(PageError::Fetch)?;
        out.extend(items);
        match next {
            Some(t) if !t.is_empty() => {
                if token.as_deref() == Some(t.as_str()) {
                    return Err(PageError::Runaway { pages });
                }
                token = Some(t);
            }
            _ => return Ok(out),
        }
    }
    Err(PageError::Runaway { pages: MAX_PAGES })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn follows_tokens_until_the_last_page() {
        // A fake server with three pages: tokens "a", "b", then none.
        let pages = [
            (vec![1, 2], Some("a")),
            (vec![3], Some("b")),
            (vec![4, 5], None),
        ];
        let mut seen = Vec::new();
        let items = run(paginate(|token: Option<String>| {
            seen.push(token.clone());
            let idx = match token.as_deref() {
                None => 0,
                Some("a") => 1,
                Some("b") => 2,
                Some(other) => panic!("unexpected token {other}"),
            };
            let (items, next) = pages[idx].clone();
            async move { Ok::<_, ()>((items, next.map(String::from))) }
        }))
        .unwrap();
        assert_eq!(items, [1, 2, 3, 4, 5]);
        assert_eq!(seen, [None, Some("a".into()), Some("b".into())]);
    }

    #[test]
    fn an_empty_token_ends_pagination() {
        let items = run(paginate(|_t| async {
            Ok::<_, ()>((vec![7], Some(String::new())))
        }))
        .unwrap();
        assert_eq!(items, [7]);
    }

    #[test]
    fn a_repeated_token_is_an_error_not_a_loop() {
        let err = run(paginate(|_t| async {
            Ok::<_, ()>((vec![1], Some("same".to_string())))
        }))
        .unwrap_err();
        assert!(matches!(err, PageError::Runaway { pages: 2 }));
    }

    #[test]
    fn a_failed_page_fails_the_whole_read() {
        let mut calls = 0;
        let err = run(paginate(|t: Option<String>| {
            calls += 1;
            async move {
                match t {
                    None => Ok((vec![1], Some("next".to_string()))),
                    Some(_) => Err("throttled"),
                }
            }
        }))
        .unwrap_err();
        assert!(matches!(err, PageError::Fetch("throttled")));
        assert_eq!(calls, 2);
    }
}
