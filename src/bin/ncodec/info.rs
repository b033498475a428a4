//! `ncodec info`: print the header of an .ncod file.

use std::path::PathBuf;

use ncodec::codec::hex;
use ncodec::registry::Family;

#[derive(clap::Args)]
pub struct Args {
    pub file: PathBuf,
}

pub fn run(a: Args) -> ncodec::Result<()> {
    let file = a.file.as_path();
    let bytes = ncodec::io::read_input(file)?;
    let (c, family, intact) = ncodec::registry::parse_stream(&bytes)?;
    let h = &c.header;
    println!("file:      {} ({} bytes)", file.display(), bytes.len());
    println!("format:    ncod v{} {:?}", ncodec::container::VERSION, h.kind);
    println!("codec:     {} (weights {})", h.codec, hex(&h.weights_digest));
    println!("quality:   {}", h.quality);
    println!("geometry:  {}x{}", h.width, h.height);
    if family == Family::Stem {
        let i = ncodec::stem::stream_info(&c)?;
        println!("video:     {} frames at {}/{} fps, intra period {}", i.frames, i.fps.0, i.fps.1, i.gop);
        println!("bpp:       {:.4}", bytes.len() as f64 * 8.0 / (h.width as f64 * h.height as f64 * i.frames as f64));
        let sizes = ncodec::stem::frame_sizes(&c)?;
        let (intra, p): (Vec<_>, Vec<_>) = sizes.iter().partition(|s| s.1);
        let mean = |v: &[&(usize, bool, usize)]| v.iter().map(|s| s.2).sum::<usize>() as f64 / v.len().max(1) as f64;
        println!("frames:    {} intra (mean {:.0} bytes), {} P (mean {:.0} bytes)", intra.len(), mean(&intra), p.len(), mean(&p));
        if !intact {
            println!("checksum:  MISMATCH: some section is damaged (ncdec --conceal decodes around it)");
        }
        print_decodable(h);
        return Ok(());
    }
    if family == Family::Nerv {
        let i = ncodec::nerv::stream_info(&c)?;
        let c = &i.config;
        println!("video:     {} frames at {}/{} fps, {} groups of {} frames", i.frames, i.fps.0, i.fps.1, i.groups(), i.group);
        println!(
            "network:   {} decoder parameters, {}x{} tiles, {} levels, embeddings {}x{}x{} per tile, widths {:?}",
            c.parameters(),
            c.tile,
            c.tile,
            c.levels,
            c.embed_dim,
            c.grid(),
            c.grid(),
            c.widths
        );
        println!("bpp:       {:.4}", bytes.len() as f64 * 8.0 / (h.width as f64 * h.height as f64 * i.frames as f64));
        let sizes: Vec<String> = ncodec::container::Container::parse(&bytes)?.sections.iter().map(|s| s.len().to_string()).collect();
        println!("sections:  header + {} groups ({} bytes)", i.groups(), sizes.join(" + "));
        println!("decodable: yes (the stream carries its network)");
        return Ok(());
    }
    println!("bpp:       {:.4}", bytes.len() as f64 * 8.0 / (h.width as f64 * h.height as f64));
    if family == Family::Overfit {
        let arch = ncodec::overfit::decode_latents(&c)?.arch;
        println!("network:   {} pyramid levels, ARM width {}, synthesis width {}: {:.0} multiplications per pixel", arch.levels, arch.arm_hidden, arch.synthesis_width, arch.macs_per_pixel());
        let sizes: Vec<String> = c.sections.iter().map(|s| s.len().to_string()).collect();
        println!("sections:  header + network + latents ({} bytes)", sizes.join(" + "));
        println!("decodable: yes (the stream carries its network)");
        return Ok(());
    }
    let sizes: Vec<String> = c.sections.iter().map(|s| s.len().to_string()).collect();
    println!("sections:  {} ({} bytes)", c.sections.len(), sizes.join(" + "));
    print_decodable(h);
    Ok(())
}

/// Whether the installed weights of the stream's codec are the ones it was made with.
fn print_decodable(h: &ncodec::container::Header) {
    match ncodec::codec::Codec::load(&h.codec) {
        Ok(codec) if codec.digest()[..8] == h.weights_digest => {
            println!("decodable: yes, with the installed '{}' weights", h.codec)
        }
        Ok(codec) => println!("decodable: no: installed '{}' weights are {}", h.codec, hex(&codec.digest()[..8])),
        Err(e) => println!("decodable: no: {e}"),
    }
}
