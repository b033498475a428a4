//! `ncodec fetch` against a local HTTP server: resume after a cut connection, checksum
//! verification, and no final file when the digest is wrong.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use ncodec::fetch::{Outcome, fetch};
use ncodec::manifest::Manifest;
use sha2::{Digest, Sha256};

/// Serves `files` over HTTP/1.1 with `Range: bytes=N-` support. While `cut` holds Some(k), the
/// next full response announces the whole length but closes after k bytes.
fn serve(files: Vec<(String, Vec<u8>)>, cut: Arc<Mutex<Option<usize>>>, log: Arc<Mutex<Vec<String>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_string();
            let mut range: Option<usize> = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = v.trim().trim_end_matches('-').parse().ok();
                }
            }
            log.lock().unwrap().push(format!("{path} {range:?}"));
            let Some((_, body)) = files.iter().find(|(n, _)| *n == path) else {
                let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            };
            let start = range.unwrap_or(0);
            let (status, slice) = if range.is_some() { ("206 Partial Content", &body[start..]) } else { ("200 OK", &body[..]) };
            let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", slice.len());
            stream.write_all(head.as_bytes()).unwrap();
            let limit = cut.lock().unwrap().take().unwrap_or(slice.len()).min(slice.len());
            let _ = stream.write_all(&slice[..limit]);
            let _ = stream.flush();
            drop(reader);
            let _ = stream.shutdown(std::net::Shutdown::Both);
            let _ = std::io::copy(&mut stream, &mut std::io::sink());
        }
    });
    format!("http://{addr}/")
}

fn manifest(base: &str, files: &[(&str, Option<String>)]) -> Manifest {
    let mut t = format!("name = \"t\"\nkind = \"images\"\ncount = {}\nbase_url = \"{base}\"\ngeometry = \"-\"\n", files.len());
    for (n, sha) in files {
        t += &format!("[[files]]\nname = \"{n}\"\n");
        if let Some(s) = sha {
            t += &format!("sha256 = \"{s}\"\n");
        }
    }
    Manifest::parse(&t).unwrap()
}

fn sha(b: &[u8]) -> String {
    ncodec::codec::hex(&Sha256::digest(b))
}

#[test]
fn resumes_a_cut_download_and_checks_digests() {
    let a: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let b: Vec<u8> = b"second file".to_vec();
    let cut = Arc::new(Mutex::new(Some(100_000)));
    let log = Arc::new(Mutex::new(vec![]));
    let base = serve(vec![("a.bin".into(), a.clone()), ("b.bin".into(), b.clone())], cut.clone(), log.clone());
    let m = manifest(&base, &[("a.bin", Some(sha(&a))), ("b.bin", None)]);
    let dir = common::tempdir();
    let d = dir.path();

    // First run: the connection drops after 100 kB; only a .part file is left.
    let err = fetch(&m, d, &|_, _, _| {}).unwrap_err().to_string();
    assert!(err.contains("resume"), "{err}");
    assert!(!d.join("a.bin").exists());
    assert_eq!(std::fs::metadata(d.join("a.bin.part")).unwrap().len(), 100_000);

    // Second run continues from byte 100000 and verifies the whole file.
    let got = fetch(&m, d, &|_, _, _| {}).unwrap();
    assert_eq!(got[0].1, Outcome::Downloaded { bytes: 300_000, resumed_from: 100_000 });
    assert_eq!(got[1].1, Outcome::Unpinned { sha256: sha(&b) });
    assert_eq!(std::fs::read(d.join("a.bin")).unwrap(), a);
    assert!(!d.join("a.bin.part").exists());
    assert!(log.lock().unwrap().contains(&"a.bin Some(100000)".to_string()), "{:?}", log.lock().unwrap());

    // Third run: everything is present, nothing is requested.
    let before = log.lock().unwrap().len();
    let again = fetch(&m, d, &|_, _, _| {}).unwrap();
    assert_eq!(again[0].1, Outcome::Present);
    assert_eq!(log.lock().unwrap().len(), before);
}

#[test]
fn wrong_digest_leaves_nothing_behind() {
    let a = vec![42u8; 5000];
    let base = serve(vec![("a.bin".into(), a)], Arc::new(Mutex::new(None)), Arc::new(Mutex::new(vec![])));
    let m = manifest(&base, &[("a.bin", Some("00".repeat(32)))]);
    let dir = common::tempdir();
    let err = fetch(&m, dir.path(), &|_, _, _| {}).unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "no file may remain");
    // A missing file is an error naming the URL.
    let m404 = manifest(&base, &[("missing.bin", None)]);
    let err = fetch(&m404, dir.path(), &|_, _, _| {}).unwrap_err().to_string();
    assert!(err.contains("missing.bin"), "{err}");
}

#[test]
fn builtin_manifests_parse_and_refuse_path_names() {
    let k = Manifest::builtin("kodak").unwrap();
    assert_eq!(k.files.len(), 24);
    assert!(k.files.iter().all(|f| f.sha256.as_ref().is_some_and(|s| s.len() == 64)));
    let u = Manifest::builtin("uvg").unwrap();
    assert_eq!(u.files.len(), 7);
    assert_eq!(u.files.iter().map(|f| f.frames.unwrap()).sum::<usize>(), 6 * 600 + 300);
    assert!(Manifest::builtin("imagenet").is_err());
    let evil = "name = \"x\"\nkind = \"images\"\ncount = 1\nbase_url = \"http://h/\"\ngeometry = \"-\"\n[[files]]\nname = \"../../etc/passwd\"\n";
    assert!(Manifest::parse(evil).is_err());
}
